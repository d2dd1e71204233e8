//! The local TON chain that `kokon demo` settles on: a driver for the
//! sandbox bridge ([`bridge.js`](bridge_script) beside this crate: the real
//! TVM, as WASM in node (`@ton/sandbox`), behind JSON lines on
//! stdin/stdout), and the steps every local run takes with it (start, open a
//! channel, close it cooperatively). Used by `kokon demo` and the tests.
//! Everything sent to the chain is built and signed by `kokon-ton`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

/// The bridge script in the source tree (its npm packages are installed
/// beside it by `just setup`). An installed `kokon` is told where it is by
/// `KOKON_TON_BRIDGE` instead.
pub fn bridge_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bridge.js")
}

/// A running bridge process.
pub struct Bridge {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Bridge {
    /// Starts the bridge script `script` (see [`bridge_script`]).
    pub fn start(script: &std::path::Path) -> anyhow::Result<Self> {
        Self::start_with(script, &[])
    }

    /// As [`Bridge::start`], with extra arguments (e.g. `--http PORT`).
    pub fn start_with(script: &std::path::Path, args: &[&str]) -> anyhow::Result<Self> {
        let dir = script
            .parent()
            .ok_or_else(|| anyhow::anyhow!("{} has no directory", script.display()))?;
        anyhow::ensure!(
            dir.join("node_modules/@ton/sandbox").is_dir(),
            "{}/node_modules is missing: run `just setup` (npm ci)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(script.file_name().unwrap_or_default())
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting node: {e}"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("no stdout"))?,
        );
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one request and returns the answer (an error if `ok` is false).
    pub fn call(&mut self, request: Value) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let answer: Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("bridge answered {line:?}: {e}"))?;
        if answer.get("ok") != Some(&Value::Bool(true)) {
            anyhow::bail!(
                "bridge error for {request}: {}",
                answer.get("error").unwrap_or(&Value::Null)
            );
        }
        Ok(answer)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `kokon demo` charges per inference: 0.001 TON.
pub const DEMO_PRICE: u128 = 1_000_000;
/// What the demo's client locks in its channel: 0.1 TON.
pub const DEMO_DEPOSIT: u128 = 100_000_000;

/// A local chain with the two funded wallets.
pub struct LocalChain {
    /// The bridge.
    pub bridge: Bridge,
    /// The payment-channel contract code (from the `tonweb` package).
    pub code: tonlib_core::cell::Cell,
    /// The client's wallet (raw address).
    pub client: String,
    /// The host's wallet (raw address).
    pub host: String,
}

/// What a settlement paid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// What the host's wallet was sent, plus its message's forwarding fee:
    /// the host's share of the channel as the contract counted it.
    pub to_host: u128,
    /// What the client's wallet was sent.
    pub to_client: u128,
}

fn field<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    v.get(name)
        .ok_or_else(|| anyhow::anyhow!("bridge answer has no {name}: {v}"))
}

fn text<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{name} is not a string: {v}"))
}

fn nanotons(v: &Value, name: &str) -> anyhow::Result<u128> {
    Ok(text(v, name)?.parse()?)
}

/// The channel's transaction in a bridge answer, if it succeeded.
fn channel_tx<'a>(answer: &'a Value, channel: &str) -> anyhow::Result<&'a Value> {
    let tx = field(answer, "txs")?
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t.get("address").and_then(Value::as_str) == Some(channel))
        .ok_or_else(|| anyhow::anyhow!("no transaction on {channel}: {answer}"))?;
    let ok = tx.get("success") == Some(&Value::Bool(true))
        && tx.get("aborted") == Some(&Value::Bool(false));
    anyhow::ensure!(ok, "the channel's transaction failed: {tx}");
    Ok(tx)
}

impl LocalChain {
    /// Starts a sandbox chain at Unix time `now`.
    pub fn start(script: &std::path::Path, now: i64) -> anyhow::Result<Self> {
        let mut bridge = Bridge::start(script)?;
        let started = bridge.call(serde_json::json!({"op": "start", "now": now}))?;
        Ok(Self {
            code: kokon_ton::cell_from_hex(text(&started, "code_hex")?)?,
            client: text(&started, "client")?.to_string(),
            host: text(&started, "host")?.to_string(),
            bridge,
        })
    }

    /// Parameters of a channel between the two wallets, with the sandbox's
    /// closing configuration (one hour of quarantine, ten minutes to settle
    /// conditionals, no fine, no excess fee).
    pub fn channel_params(
        &self,
        channel_id: u128,
        client_key: &ed25519_dalek::SigningKey,
        host_key: &ed25519_dalek::SigningKey,
    ) -> anyhow::Result<kokon_ton::ChannelParams> {
        use std::str::FromStr;
        Ok(kokon_ton::ChannelParams {
            channel_id,
            key_a: client_key.verifying_key().to_bytes(),
            key_b: host_key.verifying_key().to_bytes(),
            address_a: tonlib_core::TonAddress::from_str(&self.client)?,
            address_b: tonlib_core::TonAddress::from_str(&self.host)?,
            quarantine_duration: 3600,
            misbehavior_fine: 0,
            conditional_close_duration: 600,
            excess_fee: 0,
        })
    }

    /// Deploys, funds (by the client) and initialises a channel; returns its address.
    pub fn open_channel(
        &mut self,
        params: &kokon_ton::ChannelParams,
        client_key: &ed25519_dalek::SigningKey,
        deposit: u128,
    ) -> anyhow::Result<String> {
        self.open_channel_in_parts(params, client_key, &[deposit])
    }

    /// As [`LocalChain::open_channel`], funded by one `top_up_balance` per
    /// part before `init_channel` (the standard contract accepts top-ups only
    /// before it is initialised: afterwards it answers exit code 100).
    pub fn open_channel_in_parts(
        &mut self,
        params: &kokon_ton::ChannelParams,
        client_key: &ed25519_dalek::SigningKey,
        parts: &[u128],
    ) -> anyhow::Result<String> {
        const GAS: u128 = 100_000_000;
        let deployed = self.bridge.call(serde_json::json!({
            "op": "deploy", "from": "client", "value": GAS.to_string(),
            "data_boc": kokon_ton::boc_base64(params.data_cell()?)?,
        }))?;
        let channel = text(&deployed, "address")?.to_string();
        anyhow::ensure!(
            channel == params.address(&self.code)?.to_hex(),
            "the chain put the channel at {channel}, not where kokon computes it"
        );
        for part in parts {
            self.top_up(&channel, *part)?;
        }
        let deposit = parts.iter().sum();
        let init = kokon_ton::init_channel(params, client_key, true, deposit, 0)?;
        let inited = self.bridge.call(serde_json::json!({
            "op": "internal", "from": "client", "to": channel, "value": GAS.to_string(),
            "body_boc": kokon_ton::boc_base64(init)?,
        }))?;
        channel_tx(&inited, &channel)?;
        Ok(channel)
    }

    /// Adds `amount` to the client's side of a channel not yet initialised.
    pub fn top_up(&mut self, channel: &str, amount: u128) -> anyhow::Result<()> {
        const GAS: u128 = 100_000_000;
        let answer = self.bridge.call(serde_json::json!({
            "op": "internal", "from": "client", "to": channel,
            "value": (amount + GAS).to_string(),
            "body_boc": kokon_ton::boc_base64(kokon_ton::top_up(amount, 0)?)?,
        }))?;
        channel_tx(&answer, channel)?;
        Ok(())
    }

    /// The channel's balances (A, B) as the contract holds them.
    pub fn balances(&mut self, channel: &str) -> anyhow::Result<(u128, u128)> {
        let state = self
            .bridge
            .call(serde_json::json!({"op": "channel", "address": channel}))?;
        Ok((
            nanotons(&state, "balance_a")?,
            nanotons(&state, "balance_b")?,
        ))
    }

    /// Closes a channel cooperatively: the host gets `to_host`, the client the
    /// rest of `deposit`; both sign. Returns what the contract paid out.
    #[allow(clippy::too_many_arguments)]
    pub fn close_cooperatively(
        &mut self,
        channel: &str,
        params: &kokon_ton::ChannelParams,
        client_key: &ed25519_dalek::SigningKey,
        host_key: &ed25519_dalek::SigningKey,
        to_host: u128,
        deposit: u128,
        seqno_a: u64,
    ) -> anyhow::Result<Settlement> {
        let terms = kokon_ton::cooperative_close_terms(
            params.channel_id,
            deposit - to_host,
            to_host,
            seqno_a,
            1,
        )?;
        let close = kokon_ton::cooperative_close(
            &terms,
            &kokon_ton::sign_cell(client_key, &terms),
            &kokon_ton::sign_cell(host_key, &terms),
        )?;
        let answer = self.bridge.call(serde_json::json!({
            "op": "external", "to": channel, "body_boc": kokon_ton::boc_base64(close)?,
        }))?;
        if let Some(reason) = answer.get("rejected") {
            anyhow::bail!("the channel refused the cooperative close: {reason}");
        }
        let tx = channel_tx(&answer, channel)?;
        let outs = field(tx, "out")?.as_array().cloned().unwrap_or_default();
        let paid = |to: &str| -> anyhow::Result<(u128, u128)> {
            outs.iter()
                .filter(|m| m.get("to").and_then(Value::as_str) == Some(to))
                .try_fold((0, 0), |(v, f), m| {
                    Ok((v + nanotons(m, "value")?, f + nanotons(m, "forward_fee")?))
                })
        };
        let (host_value, host_fwd) = paid(&self.host)?;
        let (client_value, client_fwd) = paid(&self.client)?;
        // The action phase charged both messages' full forwarding fees; each
        // message carries its share left for the next hop, in proportion.
        let total_fwd = nanotons(tx, "total_fwd_fees")?;
        let host_fee = total_fwd * host_fwd / (host_fwd + client_fwd).max(1);
        Ok(Settlement {
            to_host: host_value + host_fee,
            to_client: client_value,
        })
    }
}
