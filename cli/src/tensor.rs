//! `kokon infer --input NAME=FILE[:DATATYPE:SHAPE]`: tensors from files, for
//! any model the enclave serves, its outputs printed as JSON.
//!
//! A FILE alone is a KServe input object in JSON (`{"shape": [...],
//! "datatype": "FP32", "data": [...]}`, with an optional `name` that must
//! be NAME). With `:DATATYPE:SHAPE` (e.g. `:FP32:1x3x224x224`), FILE holds
//! the raw elements, row-major and little-endian, as the binary tensor data
//! extension sends them. Either way the tensors travel as `--tensor-encoding`
//! says: binary (the default) or JSON numbers, and the outputs are asked for
//! in the same form.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use kokon_client::{Client, VerifiedEnclave};
use kokon_wire::kserve::{
    element_count, Datatype, Encoding, InferRequest, InferTensor, TensorData,
};
use serde_json::{Number, Value};

use crate::args::TensorEncoding;
use crate::channel;

impl From<TensorEncoding> for Encoding {
    fn from(form: TensorEncoding) -> Self {
        match form {
            TensorEncoding::Binary => Encoding::Binary,
            TensorEncoding::Json => Encoding::Json,
        }
    }
}

/// One `--input`: the tensor's name, its file, and for a raw file its
/// datatype and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// The input's name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// `None`: the file is a KServe input object in JSON.
    pub raw: Option<(Datatype, Vec<i64>)>,
}

/// A shape written `1x3x224x224`, when `text` is one.
fn shape(text: &str) -> Option<Vec<i64>> {
    text.split('x')
        .map(|d| {
            (!d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .then(|| d.parse::<i64>().ok())
                .flatten()
        })
        .collect()
}

impl FromStr for InputSpec {
    type Err = String;

    /// `NAME=FILE` or `NAME=FILE:DATATYPE:SHAPE`: when what follows the
    /// last colon is a shape (`1x3x224x224`), what precedes it must be a
    /// datatype, and FILE is raw; otherwise all after `=` is a JSON file.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, rest) = s
            .split_once('=')
            .filter(|(name, rest)| !name.is_empty() && !rest.is_empty())
            .ok_or_else(|| {
                format!("{s:?}: expected NAME=FILE (JSON) or NAME=FILE:DATATYPE:SHAPE (raw)")
            })?;
        let mut parts = rest.rsplitn(3, ':');
        let (last, datatype, file) = (parts.next(), parts.next(), parts.next());
        let raw = match (file, datatype, last.and_then(shape)) {
            (Some(file), Some(datatype), Some(dims)) => {
                let datatype = Datatype::from_str(datatype).map_err(|e| format!("{s:?}: {e}"))?;
                Some((file, datatype, dims))
            }
            _ => None,
        };
        Ok(match raw {
            Some((file, datatype, dims)) => Self {
                name: name.into(),
                path: file.into(),
                raw: Some((datatype, dims)),
            },
            None => Self {
                name: name.into(),
                path: rest.into(),
                raw: None,
            },
        })
    }
}

/// A KServe input object in a JSON file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonInput {
    #[serde(default)]
    name: Option<String>,
    shape: Vec<i64>,
    datatype: Datatype,
    data: Vec<Number>,
    /// Passed on as they are.
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

impl InputSpec {
    /// Reads the tensor, checking its size against its shape.
    pub fn read(&self) -> anyhow::Result<InferTensor> {
        let file = self.path.display();
        let bytes = std::fs::read(&self.path).with_context(|| format!("reading {file}"))?;
        let (shape, datatype, data, parameters) = match &self.raw {
            None => {
                let input: JsonInput = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{file}: not a KServe input object in JSON"))?;
                if let Some(named) = input.name.filter(|n| *n != self.name) {
                    anyhow::bail!("{file} is input {named:?}, given as {:?}", self.name);
                }
                let count =
                    element_count(&input.shape).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
                if input.data.len() != count {
                    anyhow::bail!(
                        "{file}: shape {:?} needs {count} elements, data holds {}",
                        input.shape,
                        input.data.len()
                    );
                }
                let data = TensorData::Json(input.data);
                (input.shape, input.datatype, data, input.parameters)
            }
            Some((datatype, shape)) => {
                let count = element_count(shape).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
                if let Some(size) = datatype.size() {
                    let needed = count.saturating_mul(size);
                    if bytes.len() != needed {
                        anyhow::bail!(
                            "{file} holds {} bytes; shape {} of {datatype} needs {needed} ({count} elements of {size} bytes)",
                            bytes.len(),
                            shape.iter().map(i64::to_string).collect::<Vec<_>>().join("x")
                        );
                    }
                }
                (shape.clone(), *datatype, TensorData::Binary(bytes), None)
            }
        };
        let tensor = InferTensor {
            name: self.name.clone(),
            shape,
            datatype,
            data,
            parameters,
        };
        tensor
            .check_binary_size("input")
            .with_context(|| format!("{file}"))?;
        Ok(tensor)
    }
}

/// The request for `inputs`, travelling (and asking for outputs) as `form`.
pub fn request(inputs: &[InputSpec], form: TensorEncoding) -> anyhow::Result<InferRequest> {
    let inputs = inputs
        .iter()
        .map(|spec| {
            spec.read()?
                .into_encoding(form.into())
                .with_context(|| format!("input {:?}", spec.name))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(InferRequest {
        inputs,
        binary_output: form == TensorEncoding::Binary,
        ..InferRequest::default()
    })
}

/// A tensor's elements as JSON values (a non-finite float as `null`).
fn printable(tensor: &InferTensor) -> anyhow::Result<Vec<Value>> {
    let floats = |values: Vec<f64>| values.into_iter().map(Value::from).collect();
    Ok(match tensor.datatype {
        Datatype::Fp32 => floats(tensor.values::<f32>()?.into_iter().map(f64::from).collect()),
        Datatype::Fp64 => floats(tensor.values::<f64>()?),
        _ => match tensor.clone().into_encoding(Encoding::Json)?.data {
            TensorData::Json(numbers) => numbers.into_iter().map(Value::Number).collect(),
            TensorData::Binary(_) => anyhow::bail!("output {:?} stayed binary", tensor.name),
        },
    })
}

/// Sends the tensors in `inputs` to the attested model as `form`, prints
/// its outputs (and the receipt) as JSON, and pays on `paying`'s channel.
pub async fn run(
    client: &Client,
    enclave: &VerifiedEnclave,
    paying: Option<channel::Paying>,
    inputs: &[String],
    form: TensorEncoding,
) -> anyhow::Result<()> {
    let inputs = inputs
        .iter()
        .map(|i| InputSpec::from_str(i).map_err(|e| anyhow::anyhow!("--input {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = request(&inputs, form)?;
    let (response, receipt) = client.infer(enclave, &request).await?;
    let owed = channel::Owed::new(paying, Some(&receipt))?;
    let outputs = response
        .outputs
        .iter()
        .map(|o| {
            Ok(serde_json::json!({
                "name": o.name,
                "datatype": o.datatype,
                "shape": o.shape,
                "data": printable(o)?,
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out = serde_json::json!({
        "model_name": response.model_name,
        "outputs": outputs,
        "receipt": receipt,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if let Some(owed) = owed {
        owed.send(client).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_specs_are_json_files_or_raw_files_with_datatype_and_shape() {
        let json: InputSpec = "x=in.json".parse().unwrap();
        assert_eq!(json.name, "x");
        assert_eq!(json.path, PathBuf::from("in.json"));
        assert_eq!(json.raw, None);
        let raw: InputSpec = "image=dir:a/cat.f32:FP32:1x3x224x224".parse().unwrap();
        assert_eq!(raw.path, PathBuf::from("dir:a/cat.f32"));
        assert_eq!(raw.raw, Some((Datatype::Fp32, vec![1, 3, 224, 224])));
        // Not a shape at the end: the whole is a file name.
        let colons: InputSpec = "x=a:b:c".parse().unwrap();
        assert_eq!(colons.path, PathBuf::from("a:b:c"));
        let e = "x=cat.f32:FP33:1x3".parse::<InputSpec>().unwrap_err();
        assert!(e.contains("unknown datatype \"FP33\""), "{e}");
        for bad in ["x", "=f", "x="] {
            let e = bad.parse::<InputSpec>().unwrap_err();
            assert!(e.contains("expected NAME=FILE"), "{bad}: {e}");
        }
        assert_eq!(shape("1x3x224x224"), Some(vec![1, 3, 224, 224]));
        for bad in ["", "1x", "x3", "1x-3", "1,3", "1X3"] {
            assert_eq!(shape(bad), None, "{bad}");
        }
    }

    #[test]
    fn files_are_read_and_sized_against_their_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("x.f32");
        let values = [0.5f32, -1.0, 2.25];
        std::fs::write(&raw, values.map(f32::to_le_bytes).concat()).unwrap();
        let spec = |shape: &str| -> InputSpec {
            format!("x={}:FP32:{shape}", raw.display()).parse().unwrap()
        };
        let tensor = spec("1x3").read().unwrap();
        assert_eq!(tensor.values::<f32>().unwrap(), values);
        let e = format!("{:#}", spec("1x4").read().unwrap_err());
        assert!(
            e.contains("holds 12 bytes; shape 1x4 of FP32 needs 16"),
            "{e}"
        );

        let json = dir.path().join("x.json");
        std::fs::write(
            &json,
            r#"{"name":"x","shape":[1,3],"datatype":"FP32","data":[0.5,-1,2.25]}"#,
        )
        .unwrap();
        let from_json: InputSpec = format!("x={}", json.display()).parse().unwrap();
        let r = request(std::slice::from_ref(&from_json), TensorEncoding::Binary).unwrap();
        assert_eq!(r.inputs[0], tensor, "JSON numbers become the same bytes");
        assert!(r.binary_output);
        let r = request(&[spec("1x3")], TensorEncoding::Json).unwrap();
        assert_eq!(r.inputs[0].data.encoding(), Encoding::Json);
        assert!(!r.binary_output);
        let other: InputSpec = format!("y={}", json.display()).parse().unwrap();
        let e = format!("{:#}", other.read().unwrap_err());
        assert!(e.contains("is input \"x\", given as \"y\""), "{e}");
        std::fs::write(&json, r#"{"shape":[2,3],"datatype":"FP32","data":[1]}"#).unwrap();
        let e = format!("{:#}", from_json.read().unwrap_err());
        assert!(
            e.contains("shape [2, 3] needs 6 elements, data holds 1"),
            "{e}"
        );
        std::fs::write(&json, r#"{"shape":[1],"datatype":"FP33","data":[1]}"#).unwrap();
        let e = format!("{:#}", from_json.read().unwrap_err());
        assert!(
            e.contains("not a KServe input object") && e.contains("FP33"),
            "{e}"
        );
    }
}
