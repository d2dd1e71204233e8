// kokon's bridge to the real TVM for billing tests.
//
// One JSON request per line on stdin, one JSON answer per line on stdout.
// It runs a local @ton/sandbox blockchain (TON's TVM compiled to WASM), two
// funded wallets ("client" and "host"), and relays the messages that kokon's
// Rust code builds (base64 BOCs) to the standard payment-channel contract,
// whose code comes from the installed `tonweb` package.
"use strict";

const readline = require("readline");
const { Blockchain } = require("@ton/sandbox");
const { Address, Cell, beginCell, contractAddress, external, toNano } = require("@ton/core");
const TonWeb = require("tonweb");

const CODE_HEX = TonWeb.payments.PaymentChannel.codeHex;

let chain;
const wallets = {};

const cell = (b64) => Cell.fromBase64(b64);

function summary(result) {
  return result.transactions.map((tx) => {
    const d = tx.description;
    const compute = d.computePhase || {};
    return {
      address: "0:" + tx.address.toString(16).padStart(64, "0"),
      aborted: !!d.aborted,
      success: compute.type === "vm" ? !!compute.success : false,
      exit_code: compute.type === "vm" ? compute.exitCode : null,
      total_fwd_fees: d.actionPhase && d.actionPhase.totalFwdFees != null ? d.actionPhase.totalFwdFees.toString() : "0",
      out: tx.outMessages.values()
        .filter((m) => m.info.type === "internal")
        .map((m) => ({
          to: m.info.dest.toRawString(),
          value: m.info.value.coins.toString(),
          forward_fee: m.info.forwardFee.toString(),
        })),
    };
  });
}

async function handle(req) {
  switch (req.op) {
    case "start": {
      chain = await Blockchain.create();
      if (req.now) chain.now = req.now;
      for (const name of ["client", "host"]) {
        wallets[name] = await chain.treasury(name, { balance: toNano("1000000") });
      }
      return {
        code_hex: CODE_HEX,
        client: wallets.client.address.toRawString(),
        host: wallets.host.address.toRawString(),
      };
    }
    case "now":
      chain.now = req.value;
      return { now: chain.now };
    case "deploy": {
      const code = Cell.fromHex(CODE_HEX);
      const data = cell(req.data_boc);
      const address = contractAddress(0, { code, data });
      const result = await wallets[req.from].send({
        to: address,
        value: BigInt(req.value),
        init: { code, data },
        body: req.body_boc ? cell(req.body_boc) : beginCell().endCell(),
        bounce: false,
      });
      return { address: address.toRawString(), txs: summary(result) };
    }
    case "internal": {
      const result = await wallets[req.from].send({
        to: Address.parse(req.to),
        value: BigInt(req.value),
        body: cell(req.body_boc),
        bounce: true,
      });
      return { txs: summary(result) };
    }
    case "external": {
      try {
        const result = await chain.sendMessage(external({ to: Address.parse(req.to), body: cell(req.body_boc) }));
        return { txs: summary(result) };
      } catch (e) {
        return { rejected: String(e.message || e).slice(0, 300) };
      }
    }
    case "message": {
      // A whole message (e.g. a wallet's signed external), as a BOC.
      try {
        return { txs: summary(await chain.sendMessage(cell(req.boc))) };
      } catch (e) {
        return { rejected: String(e.message || e).slice(0, 300) };
      }
    }
    case "fund": {
      const result = await wallets[req.from].send({
        to: Address.parse(req.to), value: BigInt(req.value), bounce: false,
      });
      return { txs: summary(result) };
    }
    case "seqno": {
      const r = await chain.runGetMethod(Address.parse(req.address), "seqno", []);
      return { seqno: r.stackReader.readNumber() };
    }
    case "balance": {
      const c = await chain.getContract(Address.parse(req.address));
      return { balance: c.balance.toString() };
    }
    case "channel": {
      const r = await chain.runGetMethod(Address.parse(req.address), "get_channel_data", []);
      const s = r.stackReader;
      const state = s.readNumber();
      const balances = s.readTuple();
      return {
        state,
        balance_a: balances.readBigNumber().toString(),
        balance_b: balances.readBigNumber().toString(),
      };
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", (line) => {
  queue = queue.then(async () => {
    let answer;
    try {
      answer = { ok: true, ...(await handle(JSON.parse(line))) };
    } catch (e) {
      answer = { ok: false, error: String(e && e.stack ? e.stack : e).slice(0, 2000) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  });
});
