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

// `--http PORT`: also serve the chain as a toncenter-style HTTP API v2
// (sendBoc, getAddressBalance, runGetMethod with integer results), so that
// kokon's live-network client and CLI can run against the sandbox.
const httpPort = process.argv.indexOf("--http") >= 0 ? Number(process.argv[process.argv.indexOf("--http") + 1]) : null;
if (httpPort !== null) {
  const http = require("http");
  const reply = (res, ok, payload) => {
    res.writeHead(ok ? 200 : 500, { "content-type": "application/json" });
    res.end(JSON.stringify(ok ? { ok: true, result: payload } : { ok: false, error: payload, code: 500 }));
  };
  http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      queue = queue.then(async () => {
        try {
          const url = new URL(req.url, "http://localhost");
          if (!chain) throw new Error("the sandbox is not started (send {\"op\":\"start\"} on stdin)");
          if (url.pathname.endsWith("/sendBoc")) {
            const { boc } = JSON.parse(body);
            const result = await chain.sendMessage(cell(boc));
            const failed = summary(result).filter((t) => t.aborted);
            return reply(res, true, { "@type": "ok", aborted: failed });
          }
          if (url.pathname.endsWith("/getAddressBalance")) {
            const c = await chain.getContract(Address.parse(url.searchParams.get("address")));
            return reply(res, true, c.balance.toString());
          }
          if (url.pathname.endsWith("/runGetMethod")) {
            const { address, method } = JSON.parse(body);
            const r = await chain.runGetMethod(Address.parse(address), method, []);
            const stack = [];
            while (r.stackReader.remaining > 0) {
              stack.push(["num", "0x" + r.stackReader.readBigNumber().toString(16)]);
            }
            return reply(res, true, { exit_code: r.exitCode, stack });
          }
          reply(res, false, `unknown route ${url.pathname}`);
        } catch (e) {
          reply(res, false, String(e.message || e).slice(0, 500));
        }
      });
    });
  }).listen(httpPort, "127.0.0.1");
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
