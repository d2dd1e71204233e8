#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]
//! The payment channel on the real TVM (@ton/sandbox): every message is
//! built and signed by kokon's Rust code (`kokon-ton`) and executed by the
//! standard payment-channel contract from the `tonweb` package.

use ed25519_dalek::SigningKey;
use kokon_ton::{
    boc_base64, cooperative_close, cooperative_close_terms, sign_cell, ChannelParams,
    SemiChannelBody, SignedState,
};
use kokon_ton_sandbox::LocalChain;
use serde_json::{json, Value};

const TON: u128 = 1_000_000_000;
const NOW: i64 = 1_780_000_000;

struct Setup {
    bridge: LocalChain,
    params: ChannelParams,
    client_key: SigningKey,
    host_key: SigningKey,
    client: String,
    host: String,
    channel: String,
}

/// Deploys and opens a channel in which the client deposits `deposit`.
fn open(deposit: u128) -> Setup {
    let mut chain = LocalChain::start(&kokon_ton_sandbox::bridge_script(), NOW).unwrap();
    let client_key = SigningKey::from_bytes(&[7; 32]);
    let host_key = SigningKey::from_bytes(&[9; 32]);
    let params = chain
        .channel_params(0x6b6f6b6f6e_u128 << 64 | 1, &client_key, &host_key)
        .unwrap();
    let channel = chain.open_channel(&params, &client_key, deposit).unwrap();
    let state = chain
        .bridge
        .call(json!({"op": "channel", "address": channel}))
        .unwrap();
    assert_eq!(state["state"], 1, "channel open: {state}");
    assert_eq!(state["balance_a"], deposit.to_string());
    Setup {
        client: chain.client.clone(),
        host: chain.host.clone(),
        bridge: chain,
        params,
        client_key,
        host_key,
        channel,
    }
}

fn tx_for<'a>(answer: &'a Value, address: &str) -> &'a Value {
    answer["txs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["address"] == address)
        .unwrap_or_else(|| panic!("no transaction on {address}: {answer}"))
}

#[test]
fn a_channel_opens_and_closes_cooperatively_with_the_host_paid_exactly_what_was_sent() {
    let deposit = 5 * TON;
    let mut s = open(deposit);
    // The client pays 37 units of 0.01 TON, one signed cumulative state each.
    let mut last = None;
    for seqno in 1..=37u64 {
        let state = SignedState::sign(
            &s.client_key,
            s.params.channel_id,
            SemiChannelBody {
                seqno,
                sent: u128::from(seqno) * TON / 100,
            },
            None,
        )
        .unwrap();
        state.verify(&s.params.key_a, s.params.channel_id).unwrap();
        last = Some(state);
    }
    let last = last.unwrap();
    let sent = last.body.sent;
    let terms = cooperative_close_terms(
        s.params.channel_id,
        deposit - sent,
        sent,
        last.body.seqno,
        1,
    )
    .unwrap();
    let close = cooperative_close(
        &terms,
        &sign_cell(&s.client_key, &terms),
        &sign_cell(&s.host_key, &terms),
    )
    .unwrap();
    let balance = |b: &mut LocalChain, a: &str| -> u128 {
        b.bridge
            .call(json!({"op": "balance", "address": a}))
            .unwrap()["balance"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = balance(&mut s.bridge, &s.channel);
    let closed = s
        .bridge
        .bridge
        .call(json!({
            "op": "external", "to": s.channel,
            "body_boc": boc_base64(close).unwrap(),
        }))
        .unwrap();
    assert!(closed.get("rejected").is_none(), "{closed}");
    let tx = tx_for(&closed, &s.channel);
    assert_eq!(tx["success"], true, "{tx}");
    let num = |v: &Value| v.as_str().unwrap().parse::<u128>().unwrap();
    // What the contract paid to `to`, and the forwarding fee deducted from it.
    let paid = |to: &str| -> (u128, u128) {
        tx["out"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["to"] == to)
            .fold((0, 0), |(v, f), m| {
                (v + num(&m["value"]), f + num(&m["forward_fee"]))
            })
    };
    let (to_host, host_fwd) = paid(&s.host);
    let (to_client, client_fwd) = paid(&s.client);
    // The contract pays each message's forwarding fee out of its value; the
    // action phase charges the full fees of both messages (the messages carry
    // the share left for the next hop), in proportion to those shares.
    let total_fwd = num(&tx["total_fwd_fees"]);
    let host_full_fee = total_fwd * host_fwd / (host_fwd + client_fwd);
    assert!(
        sent - to_host == host_full_fee || sent - to_host == host_full_fee + 1,
        "the host receives exactly the sum it was sent ({sent}) less its message's forwarding fee ({host_full_fee}): {to_host}"
    );
    // The client gets the rest of its deposit, plus what the contract held
    // beyond the deposit (the gas it was sent with), less fees: everything
    // the contract held is accounted for within 0.01 TON of fees.
    assert!(to_client >= deposit - sent, "{to_client}");
    let after = balance(&mut s.bridge, &s.channel);
    let fees = before - after - to_host - to_client;
    assert!(
        fees < TON / 100,
        "fees {fees} (before {before}, after {after})"
    );
    assert!(after < TON / 100, "the channel keeps only dust: {after}");
}

#[test]
fn a_close_signed_with_a_forged_host_signature_is_rejected_on_chain() {
    let deposit = 2 * TON;
    let mut s = open(deposit);
    let terms = cooperative_close_terms(s.params.channel_id, 0, deposit, 1, 1).unwrap();
    let forger = SigningKey::from_bytes(&[1; 32]);
    let close = cooperative_close(
        &terms,
        &sign_cell(&forger, &terms),
        &sign_cell(&s.host_key, &terms),
    )
    .unwrap();
    let answer = s
        .bridge
        .bridge
        .call(json!({"op": "external", "to": s.channel, "body_boc": boc_base64(close).unwrap()}))
        .unwrap();
    let rejected = answer["rejected"].as_str().unwrap_or_default();
    eprintln!("{rejected}");
    // 101: the contract's "wrong signature" error.
    assert!(rejected.contains("Exit code: 101"), "{answer}");
    let state = s
        .bridge
        .bridge
        .call(json!({"op": "channel", "address": s.channel}))
        .unwrap();
    assert_eq!(state["state"], 1, "still open: {state}");
    assert_eq!(state["balance_a"], deposit.to_string());
}

fn voucher(s: &Setup, seqno: u64, sent: u128) -> SignedState {
    SignedState::sign(
        &s.client_key,
        s.params.channel_id,
        SemiChannelBody { seqno, sent },
        None,
    )
    .unwrap()
}

fn host_state(s: &Setup) -> SignedState {
    SignedState::sign(
        &s.host_key,
        s.params.channel_id,
        SemiChannelBody { seqno: 1, sent: 0 },
        None,
    )
    .unwrap()
}

/// Sends `body` to the channel from a wallet with 0.1 TON for gas; true if
/// the channel's transaction succeeded.
fn send_internal(s: &mut Setup, from: &str, body: tonlib_core::cell::Cell) -> bool {
    let answer = s
        .bridge
        .bridge
        .call(json!({
            "op": "internal", "from": from, "to": s.channel,
            "value": (TON / 10).to_string(), "body_boc": boc_base64(body).unwrap(),
        }))
        .unwrap();
    let tx = tx_for(&answer, &s.channel);
    tx["success"] == true && tx["aborted"] == false
}

fn send_external(s: &mut Setup, body: tonlib_core::cell::Cell) -> Value {
    s.bridge
        .bridge
        .call(json!({"op": "external", "to": s.channel, "body_boc": boc_base64(body).unwrap()}))
        .unwrap()
}

#[test]
fn an_uncooperative_close_with_an_old_voucher_loses_to_the_newer_one() {
    use kokon_ton::{
        challenge_quarantined_state, finish_uncooperative_close, start_uncooperative_close,
    };
    let deposit = 3 * TON;
    let mut s = open(deposit);
    let old = voucher(&s, 5, 5 * TON / 100);
    let newest = voucher(&s, 10, 10 * TON / 100);
    let host = host_state(&s);

    // A voucher for another channel is refused.
    let mut other = s.params.clone();
    other.channel_id += 1;
    let foreign = SignedState::sign(
        &s.client_key,
        other.channel_id,
        SemiChannelBody {
            seqno: 11,
            sent: TON,
        },
        None,
    )
    .unwrap();
    let start = start_uncooperative_close(s.params.channel_id, &s.host_key, false, &foreign, &host)
        .unwrap();
    assert!(
        !send_internal(&mut s, "host", start),
        "a foreign voucher is refused"
    );

    // The client tries to close on its older voucher ...
    let start =
        start_uncooperative_close(s.params.channel_id, &s.client_key, true, &old, &host).unwrap();
    assert!(send_internal(&mut s, "client", start));
    let state = s
        .bridge
        .bridge
        .call(json!({"op": "channel", "address": s.channel}))
        .unwrap();
    assert_eq!(state["state"], 2, "closure started: {state}");

    // ... replaying it is refused, and the host challenges with the newest.
    let again =
        start_uncooperative_close(s.params.channel_id, &s.client_key, true, &old, &host).unwrap();
    assert!(
        !send_internal(&mut s, "client", again),
        "a replayed start is refused"
    );
    let challenge =
        challenge_quarantined_state(s.params.channel_id, &s.host_key, false, &newest, &host)
            .unwrap();
    assert!(send_internal(&mut s, "host", challenge));

    // Finishing before the quarantine ends is refused; after it, the host is
    // paid what the newest voucher says.
    assert!(send_external(&mut s, finish_uncooperative_close().unwrap())
        .get("rejected")
        .is_some());
    let later =
        NOW + i64::from(s.params.quarantine_duration + s.params.conditional_close_duration) + 10;
    s.bridge
        .bridge
        .call(json!({"op": "now", "value": later}))
        .unwrap();
    let answer = send_external(&mut s, finish_uncooperative_close().unwrap());
    assert!(answer.get("rejected").is_none(), "{answer}");
    let tx = tx_for(&answer, &s.channel);
    let to_host: u128 = tx["out"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["to"] == s.host.as_str())
        .map(|m| {
            m["value"].as_str().unwrap().parse::<u128>().unwrap()
                + m["forward_fee"].as_str().unwrap().parse::<u128>().unwrap()
        })
        .sum();
    let sent = newest.body.sent;
    assert!(
        to_host <= sent && sent - to_host < TON / 1000,
        "the host gets the newest voucher's {sent} less forwarding fees: {to_host}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_real_inferences_are_paid_by_vouchers_and_settled_on_chain() {
    use kokon_ton::voucher::{Payee, Payer};
    const PRICE: u128 = 1_000_000; // 0.001 TON per inference
    let deposit = TON;
    let mut s = open(deposit);
    let store = tempfile::tempdir().unwrap();
    // The host bills the channel (it admits only requests signed with the
    // client's channel key); the test keeps its own payee's books beside it.
    let stack = kokon_tests::Stack::start(kokon_tests::Options {
        enclave_args: vec!["--price-nanoton-per-unit".into(), PRICE.to_string()],
        ledger: Some(kokon_host::ledger::LedgerConfig {
            channels: vec![kokon_host::ledger::ChannelConfig {
                id: s.params.channel_id.to_string(),
                client_key: hex::encode(s.params.key_a),
                deposit: deposit.to_string(),
                credit_limit: (5 * PRICE).to_string(),
                address: None,
            }],
            store: store.path().join("host"),
            host_key_file: None,
        }),
        ..Default::default()
    })
    .await;
    // The dev policy accepts up to 0.001 TON (PRICE) per inference.
    let policy = stack.policy(kokon_tests::DEV_POLICY);
    let enclave = stack
        .client
        .attest(&policy)
        .await
        .unwrap()
        .with_channel(s.params.channel_id, s.client_key.clone());
    let mut payer = Payer::new(s.client_key.clone(), s.params.channel_id, deposit, None);
    let mut payee = Payee::new(
        s.params.key_a,
        s.params.channel_id,
        deposit,
        5 * PRICE,
        None,
    )
    .unwrap();
    let magika = stack.env.magika();
    let kokon_client::magika::Prepared::Features(row) =
        magika.prepare(include_bytes!("../../attestation/src/tdx/quote.rs"))
    else {
        panic!("sample too small")
    };
    let request = kokon_tests::magika_request(&[row]);
    let mut receipts = 0u128;
    for _ in 0..100 {
        payee.admit(PRICE).unwrap();
        let (_, receipt) = stack.client.infer(&enclave, &request).await.unwrap();
        let r = &receipt.receipt;
        assert_eq!((r.amount, r.channel_id), (PRICE, s.params.channel_id));
        receipts += r.amount;
        assert_eq!(
            r.cumulative, receipts,
            "the enclave's running total for the channel"
        );
        payee.charge(r.amount);
        let voucher = payer.pay(r.amount).unwrap();
        assert_eq!(payee.accept(&voucher).unwrap(), PRICE);
        assert_eq!(stack.client.pay(&voucher).await.unwrap(), receipts);
    }
    stack.shutdown().await;
    assert_eq!(receipts, 100 * PRICE);
    assert_eq!(payee.paid(), receipts);
    let seqno = payee.latest().unwrap().body.seqno;
    let received = s
        .bridge
        .close_cooperatively(
            &s.channel,
            &s.params,
            &s.client_key,
            &s.host_key,
            payee.paid(),
            deposit,
            seqno,
        )
        .unwrap()
        .to_host;
    assert!(
        received == receipts || received + 1 == receipts,
        "the host receives the sum of the receipts ({receipts}), fees accounted: {received}"
    );
}

#[test]
fn settlement_messages_go_out_from_v4r2_and_v5r1_wallets() {
    use kokon_ton::wallet::{Outgoing, Version, Wallet};
    use kokon_ton::{init_channel, top_up};
    let mut chain = LocalChain::start(&kokon_ton_sandbox::bridge_script(), NOW).unwrap();
    let client_key = SigningKey::from_bytes(&[51; 32]);
    let host_key = SigningKey::from_bytes(&[52; 32]);
    let client = Wallet::new(Version::V4R2, &client_key).unwrap();
    let host = Wallet::new(Version::V5R1, &host_key).unwrap();
    for w in [&client, &host] {
        chain
            .bridge
            .call(json!({"op": "fund", "from": "client", "to": w.address().to_hex(), "value": (3 * TON).to_string()}))
            .unwrap();
    }
    // Payouts go to the two wallets, not to the sandbox's treasuries.
    let params = ChannelParams {
        address_a: client.address().clone(),
        address_b: host.address().clone(),
        ..chain.channel_params(77, &client_key, &host_key).unwrap()
    };
    let code = chain.code.clone();
    let channel = params.address(&code).unwrap();
    let channel_raw = channel.to_hex();
    let expire = (NOW + 600) as u32;
    let deposit = TON;
    let send = |chain: &mut LocalChain, wallet: &Wallet, seqno: u32, out: Outgoing| -> Value {
        let ext = wallet.external(seqno, expire, seqno == 0, &[out]).unwrap();
        let answer = chain
            .bridge
            .call(json!({"op": "message", "boc": boc_base64(ext).unwrap()}))
            .unwrap();
        assert!(answer.get("rejected").is_none(), "{answer}");
        answer
    };
    // The client's v4r2 wallet deploys the channel funded in one message
    // (state init + top_up), then opens it.
    let deployed = send(
        &mut chain,
        &client,
        0,
        Outgoing {
            to: channel.clone(),
            value: deposit + TON / 10,
            body: top_up(deposit, 0).unwrap(),
            init: Some((code.clone(), params.data_cell().unwrap())),
        },
    );
    assert_eq!(
        tx_for(&deployed, &channel_raw)["success"],
        true,
        "{deployed}"
    );
    let inited = send(
        &mut chain,
        &client,
        1,
        Outgoing {
            to: channel.clone(),
            value: TON / 10,
            body: init_channel(&params, &client_key, true, deposit, 0).unwrap(),
            init: None,
        },
    );
    assert_eq!(tx_for(&inited, &channel_raw)["success"], true, "{inited}");
    let state = chain
        .bridge
        .call(json!({"op": "channel", "address": channel_raw}))
        .unwrap();
    assert_eq!(
        (state["state"].as_i64(), state["balance_a"].as_str()),
        (Some(1), Some("1000000000"))
    );
    // The host's v5r1 wallet submits the cooperative close.
    let sent = 123 * TON / 1000;
    let terms = cooperative_close_terms(params.channel_id, deposit - sent, sent, 5, 1).unwrap();
    let close = cooperative_close(
        &terms,
        &sign_cell(&client_key, &terms),
        &sign_cell(&host_key, &terms),
    )
    .unwrap();
    let closed = send(
        &mut chain,
        &host,
        0,
        Outgoing {
            to: channel.clone(),
            value: TON / 20,
            body: close,
            init: None,
        },
    );
    let tx = tx_for(&closed, &channel_raw);
    assert_eq!(tx["success"], true, "{closed}");
    let to_host: u128 = tx["out"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["to"] == host.address().to_hex().as_str())
        .map(|m| m["value"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert!(
        to_host > 0 && to_host <= sent && sent - to_host < TON / 1000,
        "{to_host}"
    );
}
