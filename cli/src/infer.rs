//! `kokon infer`: verify the enclave, classify a file privately (or send
//! tensors from files to any model: [`crate::tensor`]), and pay for it on a
//! payment channel.

use std::time::{Duration, Instant};

use anyhow::Context;
use kokon_client::magika::{self, Classification, Magika, Prepared};
use kokon_client::{Client, ClientError, VerifiedEnclave};

use crate::args::InferArgs;
use crate::{channel, local};

/// `kokon infer`.
pub async fn run(args: InferArgs) -> anyhow::Result<()> {
    let InferArgs {
        host,
        policy,
        model,
        file,
        input,
        tensor_encoding,
        channel,
        json,
    } = args;
    let p = local::load_policy(&policy)?;
    let client = local::client(&host)?;
    let mut enclave = client.attest(&p).await?;
    let paying = match &channel {
        Some(path) => {
            let paying = channel::Paying::open(path, &client).await?;
            enclave = paying.bill(enclave)?;
            Some(paying)
        }
        None => None,
    };
    if enclave.evidence.claims.model_name != model {
        anyhow::bail!(
            "the attested enclave serves model {:?}, not {model:?}",
            enclave.evidence.claims.model_name
        );
    }
    let Some(file) = file else {
        return crate::tensor::run(&client, &enclave, paying, &input, tensor_encoding).await;
    };
    let magika = load_magika(&client, &enclave).await?;
    let prepared = magika
        .prepare_file(&file)
        .with_context(|| format!("reading {}", file.display()))?;
    let c = classify(&client, &enclave, &magika, prepared).await?;
    // Paid only after the receipt verified; the voucher is saved
    // before it is handed over, so it is never lost. The result is
    // shown whatever happens to the payment.
    let owed = channel::Owed::new(paying, c.receipt.as_ref())?;
    if json {
        let out = serde_json::json!({
            "file": file.display().to_string(),
            "dl": c.result.dl, "output": c.result.output, "score": c.result.score,
            "receipt": c.receipt,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!(
            "{}: {} (model label {}, score {:.3})",
            file.display(),
            c.result.output,
            c.result.dl,
            c.result.score
        );
        if let Some(r) = c.receipt {
            println!(
                "receipt verified: seq {} units {}",
                r.receipt.sequence, r.receipt.units
            );
        }
    }
    if let Some(owed) = owed {
        owed.send(&client).await?;
    }
    Ok(())
}

/// The outcome of one private classification.
pub struct Classified {
    /// Magika's verdict.
    pub result: Classification,
    /// The enclave's verified receipt (none when decided locally).
    pub receipt: Option<kokon_billing::SignedReceipt>,
    /// Size of the sealed request's plaintext.
    pub sealed_bytes: usize,
    /// Time end to end.
    pub elapsed: Duration,
}

/// Classifies one prepared file in the enclave (or locally, when Magika
/// decides without the model).
pub async fn classify(
    client: &Client,
    enclave: &VerifiedEnclave,
    magika: &Magika,
    prepared: Prepared,
) -> Result<Classified, ClientError> {
    let started = Instant::now();
    let row = match prepared {
        Prepared::Decided(result) => {
            return Ok(Classified {
                result,
                receipt: None,
                sealed_bytes: 0,
                elapsed: started.elapsed(),
            })
        }
        Prepared::Features(row) => row,
    };
    // Binary INT32 rows in, binary FP32 scores out.
    let request = magika::request(&[row]);
    let sealed_bytes = request.encode().map(|e| e.body.len()).unwrap_or(0);
    let (response, receipt) = client.infer(enclave, &request).await?;
    let scores = response
        .outputs
        .iter()
        .find(|o| o.name == magika::OUTPUT)
        .and_then(|o| o.f32_data())
        .ok_or_else(|| {
            ClientError::Protocol(format!("response has no numeric {} output", magika::OUTPUT))
        })?;
    let result = magika.classify(&scores).map_err(ClientError::Protocol)?;
    Ok(Classified {
        result,
        receipt: Some(receipt),
        sealed_bytes,
        elapsed: started.elapsed(),
    })
}

/// Magika's pre- and post-processing: as the attested enclave serves it
/// with the model's metadata (measured into its serving configuration), or
/// from the local `magika` package that `KOKON_MAGIKA_DIR` names, when set.
pub async fn load_magika(client: &Client, enclave: &VerifiedEnclave) -> anyhow::Result<Magika> {
    if let Some(dir) = std::env::var_os("KOKON_MAGIKA_DIR") {
        return Magika::load(std::path::Path::new(&dir)).map_err(anyhow::Error::msg);
    }
    let metadata = client.model_metadata(enclave).await?;
    Magika::from_metadata(&metadata).map_err(anyhow::Error::msg)
}
