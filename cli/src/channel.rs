//! `kokon channel open|status|close`: the client's payment channel on a
//! TON network (testnet, mainnet, or the local sandbox's HTTP API), kept in a
//! channel file (mode 0600: it holds the client's channel key).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use kokon_ton::voucher::Payer;
use kokon_ton::wallet::{Outgoing, Version, Wallet};
use kokon_ton::{ChannelParams, SemiChannelBody};
use kokon_ton_api::{NetworkConfig, TonApi};

use crate::args::ChannelCommand;
use kokon_wire::billing::VoucherJson;
use serde::{Deserialize, Serialize};
use tonlib_core::TonAddress;

/// Gas sent with each message to the channel: 0.1 TON.
const GAS: u128 = 100_000_000;

/// What the client keeps about its channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    /// The network file it lives on.
    pub network: PathBuf,
    /// The channel ID (decimal).
    pub channel_id: String,
    /// The client's channel (and wallet) key: hex Ed25519 seed. Secret.
    pub client_key: String,
    /// The host's channel key (hex).
    pub host_key: String,
    /// The client's wallet (v4r2), raw address.
    pub client_wallet: String,
    /// The host's payout address.
    pub host_address: String,
    /// The channel contract, raw address.
    pub channel_address: String,
    /// The client's deposit (nanotons, decimal).
    pub deposit: String,
    /// The newest voucher the client signed.
    pub voucher: Option<VoucherJson>,
}

fn number(text: &str, what: &str) -> anyhow::Result<u128> {
    text.parse().with_context(|| format!("{what}: {text:?}"))
}

impl ChannelFile {
    /// Reads a channel file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes it (mode 0600) atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("installing {}", path.display()))
    }

    /// The client's channel key.
    pub fn key(&self) -> anyhow::Result<SigningKey> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&self.client_key, seed.as_mut()).context("client_key")?;
        Ok(SigningKey::from_bytes(&seed))
    }

    /// The channel ID.
    pub fn id(&self) -> anyhow::Result<u128> {
        number(&self.channel_id, "channel_id")
    }

    /// The client's side, continuing from the newest voucher.
    pub fn payer(&self) -> anyhow::Result<Payer> {
        let last = match &self.voucher {
            Some(v) => Some(v.state().map_err(anyhow::Error::msg)?.body),
            None => None,
        };
        Ok(Payer::new(
            self.key()?,
            self.id()?,
            number(&self.deposit, "deposit")?,
            last,
        ))
    }
}

/// A client paying for its requests on its channel file: each voucher is
/// saved before it is sent, so none is ever lost.
pub struct Paying {
    path: PathBuf,
    file: ChannelFile,
}

impl Paying {
    /// Loads the channel file at `path` and sends the saved voucher that
    /// may not have reached the host last time (a host that already holds
    /// it answers 409).
    pub async fn open(path: &Path, client: &kokon_client::Client) -> anyhow::Result<Self> {
        let file = ChannelFile::load(path)?;
        if let Some(saved) = &file.voucher {
            let state = saved.state().map_err(anyhow::Error::msg)?;
            match client.pay(&state).await {
                Ok(_) | Err(kokon_client::ClientError::Host { status: 409, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The channel's ID and client key, which bill requests to it.
    pub fn channel(&self) -> anyhow::Result<(u128, SigningKey)> {
        Ok((self.file.id()?, self.file.key()?))
    }

    /// Bills `enclave`'s requests to this channel.
    pub fn bill(
        &self,
        enclave: kokon_client::VerifiedEnclave,
    ) -> anyhow::Result<kokon_client::VerifiedEnclave> {
        let (id, key) = self.channel()?;
        Ok(enclave.with_channel(id, key))
    }

    /// Signs and saves the voucher that adds `amount` (a verified
    /// receipt's) to what was paid.
    pub fn voucher(&mut self, amount: u128) -> anyhow::Result<kokon_ton::SignedState> {
        let v = self.file.payer()?.pay(amount)?;
        self.file.voucher = Some(VoucherJson::from(&v));
        self.file.save(&self.path)?;
        Ok(v)
    }

    /// Pays `amount` to the host: a saved voucher, then sent.
    pub async fn pay(&mut self, client: &kokon_client::Client, amount: u128) -> anyhow::Result<()> {
        let v = self.voucher(amount)?;
        self.send(client, &v).await
    }

    /// Sends a saved voucher; a failure says where it is kept.
    pub async fn send(
        &self,
        client: &kokon_client::Client,
        v: &kokon_ton::SignedState,
    ) -> anyhow::Result<()> {
        client.pay(v).await.map(|_| ()).map_err(|e| {
            anyhow::anyhow!(
                "the payment did not reach the host: {e}. The voucher (seqno {}) is saved in {}; the next request on this channel sends a newer one that covers it",
                v.body.seqno,
                self.path.display()
            )
        })
    }
}

/// What a verified receipt owes the host: its voucher, signed and saved
/// before the result is shown (so it is never lost), and sent after it (so
/// the result is shown whatever happens to the payment).
pub struct Owed {
    paying: Paying,
    voucher: kokon_ton::SignedState,
}

impl Owed {
    /// The voucher for `receipt` on `paying`'s channel, when paying for a
    /// request the enclave served (one decided locally has no receipt).
    pub fn new(
        paying: Option<Paying>,
        receipt: Option<&kokon_billing::SignedReceipt>,
    ) -> anyhow::Result<Option<Self>> {
        let (Some(mut paying), Some(receipt)) = (paying, receipt) else {
            return Ok(None);
        };
        let voucher = paying.voucher(receipt.receipt.amount)?;
        Ok(Some(Self { paying, voucher }))
    }

    /// Sends the voucher, once the result is shown.
    pub async fn send(self, client: &kokon_client::Client) -> anyhow::Result<()> {
        self.paying
            .send(client, &self.voucher)
            .await
            .map_err(|e| anyhow::anyhow!("the result above is yours, but {e:#}"))
    }
}

async fn channel_state(api: &TonApi, channel: &str) -> anyhow::Result<u64> {
    let stack = api.run_get_method(channel, "get_channel_state").await?;
    first_number(&stack)
}

fn first_number(stack: &serde_json::Value) -> anyhow::Result<u64> {
    let text = stack
        .get(0)
        .and_then(|item| item.get(1))
        .and_then(|v| v.as_str())
        .with_context(|| format!("expected a number on the stack: {stack}"))?;
    u64::from_str_radix(text.trim_start_matches("0x"), 16).with_context(|| format!("{text:?}"))
}

/// Waits (up to a minute) for the channel to reach `state`.
async fn wait_state(api: &TonApi, channel: &str, state: u64) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = channel_state(api, channel).await {
            if s == state {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the channel {channel} did not reach state {state} within a minute");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `kokon channel open`.
pub async fn open(
    network: &Path,
    host_key: &str,
    host_address: &str,
    deposit: u128,
    out: &Path,
) -> anyhow::Result<ChannelFile> {
    let api = TonApi::new(NetworkConfig::from_file(network)?)?;
    let seed = client_seed(&out.with_extension("key"))?;
    let key = SigningKey::from_bytes(&seed);
    let mut host = [0u8; 32];
    hex::decode_to_slice(host_key, &mut host).context("--host-key: 32 bytes of hex")?;
    let wallet = Wallet::new(Version::V4R2, &key)?;
    let wallet_raw = wallet.address().to_hex();
    let needed = deposit + 3 * GAS;
    // An unreachable or failing API is reported as such: never read as an
    // empty wallet, which would ask the user to send funds to fix a URL.
    let balance = api.balance(&wallet_raw).await.context(
        "reading the client wallet's balance (nothing was sent; check the network file's endpoint)",
    )?;
    if balance < needed {
        bail!("fund the client wallet {wallet_raw} with at least {needed} nanotons (it holds {balance}), then run this again");
    }
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    let params = ChannelParams {
        channel_id: u128::from_be_bytes(id) >> 1 | 1,
        key_a: key.verifying_key().to_bytes(),
        key_b: host,
        address_a: wallet.address().clone(),
        address_b: host_address
            .parse::<TonAddress>()
            .context("--host-address")?,
        quarantine_duration: 3600,
        misbehavior_fine: 0,
        conditional_close_duration: 600,
        excess_fee: 0,
    };
    let code = payment_channel_code()?;
    let channel = params.address(&code)?;
    let seqno = match api.run_get_method(&wallet_raw, "seqno").await {
        Ok(stack) => first_number(&stack)? as u32,
        Err(_) => 0,
    };
    let expire = (kokon_client::unix_now() + 600) as u32;
    let deploy = wallet.external(
        seqno,
        expire,
        seqno == 0,
        &[Outgoing {
            to: channel.clone(),
            value: deposit + GAS,
            body: kokon_ton::top_up(deposit, 0)?,
            init: Some((code, params.data_cell()?)),
        }],
    )?;
    api.send_boc(&kokon_ton::boc_base64(deploy)?).await?;
    wait_state(&api, &channel.to_hex(), 0).await?;
    let init = wallet.external(
        seqno + 1,
        expire,
        false,
        &[Outgoing {
            to: channel.clone(),
            value: GAS,
            body: kokon_ton::init_channel(&params, &key, true, deposit, 0)?,
            init: None,
        }],
    )?;
    api.send_boc(&kokon_ton::boc_base64(init)?).await?;
    wait_state(&api, &channel.to_hex(), 1).await?;
    let file = ChannelFile {
        network: network.to_path_buf(),
        channel_id: params.channel_id.to_string(),
        client_key: hex::encode(seed.as_ref()),
        host_key: hex::encode(host),
        client_wallet: wallet_raw,
        host_address: params.address_b.to_hex(),
        channel_address: channel.to_hex(),
        deposit: deposit.to_string(),
        voucher: None,
    };
    file.save(out)?;
    Ok(file)
}

/// The client's key: read from `path`, or drawn and written there (mode
/// 0600) the first time, so that a second `open` after funding the wallet
/// uses the same wallet.
fn client_seed(path: &Path) -> anyhow::Result<zeroize::Zeroizing<[u8; 32]>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    match std::fs::read_to_string(path) {
        Ok(text) => {
            hex::decode_to_slice(text.trim(), seed.as_mut())
                .with_context(|| format!("{}: expected 32 bytes of hex", path.display()))?;
        }
        Err(_) => {
            getrandom::fill(seed.as_mut()).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(hex::encode(seed.as_ref()).as_bytes())?;
            f.sync_all()?;
        }
    }
    Ok(seed)
}

/// The payment-channel contract code, from the installed `tonweb` package.
fn payment_channel_code() -> anyhow::Result<tonlib_core::cell::Cell> {
    let bridge = crate::local::env_path("KOKON_TON_BRIDGE")?;
    let dir = bridge
        .parent()
        .context("KOKON_TON_BRIDGE has no directory")?;
    let out = std::process::Command::new("node")
        .args([
            "-e",
            "process.stdout.write(require('tonweb').payments.PaymentChannel.codeHex)",
        ])
        .current_dir(dir)
        .output()
        .context("running node to read tonweb's PaymentChannel.codeHex (run `just setup`)")?;
    if !out.status.success() {
        bail!(
            "reading tonweb's PaymentChannel.codeHex: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(kokon_ton::cell_from_hex(
        String::from_utf8_lossy(&out.stdout).trim(),
    )?)
}

/// `kokon channel status`: the file's view, the chain's if reachable.
pub async fn status(file: &ChannelFile) -> anyhow::Result<serde_json::Value> {
    let state = match TonApi::new(NetworkConfig::from_file(&file.network)?) {
        Ok(api) => channel_state(&api, &file.channel_address).await.ok(),
        Err(_) => None,
    };
    let newest = match &file.voucher {
        Some(v) => Some(kokon_ton::SignedState::to_boc_base64(
            &v.state().map_err(anyhow::Error::msg)?,
        )?),
        None => None,
    };
    let (seqno, sent) = file
        .voucher
        .as_ref()
        .map(|v| (v.seqno, v.sent.clone()))
        .unwrap_or((0, "0".into()));
    Ok(serde_json::json!({
        "channel_id": file.channel_id,
        "channel_address": file.channel_address,
        "deposit": file.deposit,
        "seqno": seqno,
        "sent": sent,
        "on_chain_state": state,
        "newest_state_boc": newest,
    }))
}

/// `kokon channel close`: the host co-signs a cooperative close at the newest
/// voucher; the client checks and signs it and broadcasts it.
pub async fn close(file: &ChannelFile, host: &str) -> anyhow::Result<(u128, u128)> {
    let id = file.id()?;
    let deposit = number(&file.deposit, "deposit")?;
    let mine: SemiChannelBody = file.payer()?.state();
    let http = crate::local::client(host)?;
    let offer = http.close_offer(id).await?;
    if offer.to_host != mine.sent || offer.to_host + offer.to_client != deposit {
        bail!(
            "the host proposes {} to itself and {} to the client; the newest voucher says {} of {deposit}",
            offer.to_host,
            offer.to_client,
            mine.sent
        );
    }
    let terms = kokon_ton::cooperative_close_terms(
        id,
        offer.to_client,
        offer.to_host,
        offer.seqno_a,
        offer.seqno_b,
    )?;
    let mut host_key = [0u8; 32];
    hex::decode_to_slice(&file.host_key, &mut host_key)?;
    let mut host_sig = [0u8; 64];
    hex::decode_to_slice(&offer.signature, &mut host_sig).context("host signature")?;
    kokon_ton::verify_cell(&host_key, &terms, &host_sig, "host's close signature")?;
    let close = kokon_ton::cooperative_close(
        &terms,
        &kokon_ton::sign_cell(&file.key()?, &terms),
        &host_sig,
    )?;
    let api = TonApi::new(NetworkConfig::from_file(&file.network)?)?;
    // The contract accepts a cooperative close as an external message.
    let external =
        kokon_ton::external_message(&file.channel_address.parse::<TonAddress>()?, close)?;
    api.send_boc(&kokon_ton::boc_base64(external)?).await?;
    wait_state(&api, &file.channel_address, 0).await?;
    Ok((offer.to_host, offer.to_client))
}

/// `kokon host settle`: for every configured channel with an address and a
/// voucher, start an uncooperative close on the newest voucher from the
/// host's v5r1 wallet; with `finish`, finish the closes whose quarantine
/// has passed.
pub async fn settle(
    ledger: &kokon_host::ledger::LedgerConfig,
    network: &Path,
    finish: bool,
) -> anyhow::Result<Vec<String>> {
    let api = TonApi::new(NetworkConfig::from_file(network)?)?;
    let book = kokon_host::ledger::Ledger::open(ledger)?;
    let key = book
        .host_key()
        .context("the channels file names no host_key_file: the host cannot sign")?;
    let wallet = Wallet::new(Version::V5R1, key)?;
    let wallet_raw = wallet.address().to_hex();
    let mut seqno = match api.run_get_method(&wallet_raw, "seqno").await {
        Ok(stack) => Some(first_number(&stack)? as u32),
        Err(_) => None,
    };
    let mut report = Vec::new();
    for c in &ledger.channels {
        let (Some(address), Ok(id)) = (&c.address, c.id.parse::<u128>()) else {
            report.push(format!(
                "channel {}: no address in the channels file, skipped",
                c.id
            ));
            continue;
        };
        if finish {
            let body = kokon_ton::external_message(
                &address.parse::<TonAddress>()?,
                kokon_ton::finish_uncooperative_close()?,
            )?;
            api.send_boc(&kokon_ton::boc_base64(body)?).await?;
            wait_state(&api, address, 0).await?;
            report.push(format!("channel {id}: closed"));
            continue;
        }
        let Some(voucher) = book.latest(id) else {
            report.push(format!("channel {id}: no voucher, nothing to claim"));
            continue;
        };
        let balance = api
            .balance(&wallet_raw)
            .await
            .context("reading the host wallet's balance (nothing was sent; check the network file's endpoint)")?;
        if balance < 2 * GAS {
            bail!(
                "fund the host wallet {wallet_raw} with at least {} nanotons to send the close",
                2 * GAS
            );
        }
        let own =
            kokon_ton::SignedState::sign(key, id, SemiChannelBody { seqno: 1, sent: 0 }, None)?;
        let start = kokon_ton::start_uncooperative_close(id, key, false, &voucher, &own)?;
        let current = seqno.unwrap_or(0);
        let ext = wallet.external(
            current,
            (kokon_client::unix_now() + 600) as u32,
            seqno.is_none(),
            &[Outgoing {
                to: address.parse::<TonAddress>()?,
                value: GAS,
                body: start,
                init: None,
            }],
        )?;
        api.send_boc(&kokon_ton::boc_base64(ext)?).await?;
        seqno = Some(current + 1);
        wait_state(&api, address, 2).await?;
        report.push(format!(
            "channel {id}: uncooperative close started on voucher seqno {} ({} nanotons); run with --finish after the quarantine",
            voucher.body.seqno, voucher.body.sent
        ));
    }
    Ok(report)
}

/// `kokon channel ...`.
pub async fn run(cmd: ChannelCommand) -> anyhow::Result<()> {
    match cmd {
        ChannelCommand::Open {
            network,
            host_key,
            host_address,
            deposit,
            out,
        } => {
            let f = open(&network, &host_key, &host_address, deposit, &out).await?;
            println!(
                "channel {} open at {} with {} nanotons; kept in {}",
                f.channel_id,
                f.channel_address,
                f.deposit,
                out.display()
            );
            Ok(())
        }
        ChannelCommand::Status {
            channel: path,
            json,
        } => {
            let v = status(&ChannelFile::load(&path)?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let field = |k: &str| v.get(k).cloned().unwrap_or_default();
                println!(
                    "channel {} at {}: deposit {} nanotons, sent {} (voucher seqno {}), on-chain state {}",
                    field("channel_id"),
                    field("channel_address"),
                    field("deposit"),
                    field("sent"),
                    field("seqno"),
                    field("on_chain_state")
                );
            }
            Ok(())
        }
        ChannelCommand::Close {
            channel: path,
            host,
        } => {
            let (to_host, to_client) = close(&ChannelFile::load(&path)?, &host).await?;
            println!("closed: {to_host} nanotons to the host, {to_client} back to the client");
            Ok(())
        }
    }
}
