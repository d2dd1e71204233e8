#!/usr/bin/env bash
# Smoke-runs every fuzz target for a few seconds (default 10 s each), with a
# corpus seeded from valid inputs: the real TDX quotes in ../shared/fixtures,
# the SNP reports, VCEKs and DCAP collateral there, the NVIDIA GPU reports
# and chain there, the shipped policies, and kokon's own outputs.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain
# accept them. No sanitizer: kokon forbids unsafe code, so the fuzzers look
# for panics, overflows (debug assertions are on) and hangs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
corpus=fuzz/corpus
mkdir -p $corpus/{tdx_quote,bundle_json,ohttp,wire_frame,receipt,policy,snp_report,tdx_collateral,snp_cert_table,ratls_cert,eventlog,qgs_message,voucher,payer_proof,openai_request,stream_decoders,kserve_binary,ovmf_snp,tdvf_metadata,nvidia_gpu_report,ocsp_response,nvidia_rim,data_verity}
for f in ../shared/fixtures/tdx/*.dat; do [ -f "$f" ] && cp "$f" $corpus/tdx_quote/; done
cp policies/*.toml $corpus/policy/
for f in ../shared/fixtures/snp/*.bin; do cp "$f" $corpus/snp_report/; done
cp ../shared/fixtures/tdx/*_collateral.json $corpus/tdx_collateral/
for f in ../shared/fixtures/snp/*.der; do cp "$f" $corpus/ratls_cert/; done
# NVIDIA GPU reports are published as hex; the target also reads its input
# as a certificate chain text.
for f in trustee_hopperAttestationReport trustee_hopper_coco_report1; do
  python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(open(sys.argv[1]).read().strip()))' \
    "../shared/fixtures/nvidia/$f.txt" > "$corpus/nvidia_gpu_report/$f"
done
cp ../shared/fixtures/nvidia/trustee_hopper_cert_chain_case1.txt $corpus/nvidia_gpu_report/chain
# A RIM in NVIDIA's form (unsigned: the signature's structure is the fuzzer's to find).
printf '<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" xmlns:ns0="http://standards.iso.org/iso/19770/-2/2015/schema.xsd" xmlns:ns2="http://www.w3.org/2001/04/xmlenc#sha384" name="GH100"><ns0:Meta colloquialVersion="550.90.07"/><ns0:Payload><ns0:Resource type="Measurement" index="0" active="True" alternatives="1" ns2:Hash0="%096d" size="48"/></ns0:Payload><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2006/12/xml-c14n11"/></ds:SignedInfo></ds:Signature></SoftwareIdentity>' 0 > $corpus/nvidia_rim/swid
# OCSP responses: tryLater, and a successful one whose basic response is empty.
printf '\x30\x03\x0a\x01\x03' > $corpus/ocsp_response/try-later
printf '\x30\x14\x0a\x01\x00\xa0\x0f\x30\x0d\x06\x09\x2b\x06\x01\x05\x05\x07\x30\x01\x01\x04\x00' > $corpus/ocsp_response/basic
head -c 8192 ../shared/fixtures/tdx/eventlog/gotdx_ccel_data.dat > $corpus/eventlog/gotdx
head -c 8192 ../shared/fixtures/tdx/eventlog/trustee_ccel_data_ovmf.bin > $corpus/eventlog/ovmf
printf '\x8d\x75\xda\x63\x64\xe6\x64\x45\xad\xc5\xf4\xb9\x3b\xe8\xac\xcd\x30\x00\x00\x00\x04\x00\x00\x00%048dvcek' 0 > $corpus/snp_cert_table/vcek
printf '\x00\x00\x00\x04\x02abcd' > $corpus/wire_frame/ohttp
printf '{"receipt":{"request_digest":"%064d","response_digest":"%064d","model_digest":"%064d","units":1,"sequence":1,"issued_at":0},"signature":"%0128d"}' 0 0 0 0 > $corpus/receipt/zero
printf '\x01\x00\x20%032d\x00\x04\x00\x01\x00\x02' 0 > $corpus/ohttp/config
# A QGS quote response (header, key ID size 0, quote size 4, "abcd").
printf '\x01\x00\x00\x00\x01\x00\x00\x00\x1c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00abcd' > $corpus/qgs_message/response
printf '{"channel_id":"1","seqno":3,"sent":"3000000","signature":"%0128d"}' 0 > $corpus/voucher/zero
printf '{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stop":["a"],"stream":true,"stream_options":{"include_usage":true}}' > $corpus/openai_request/chat
printf '{"model":"m","prompt":["x"],"max_tokens":4}' > $corpus/openai_request/completion
printf '\x03\x40\xc8\x00\x05hello\x00\x00' > $corpus/stream_decoders/bhttp
# A request with one binary FP32 input of 2 elements: the header length (2
# bytes, big-endian), the JSON header, then 8 bytes of tensor data.
header='{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}],"parameters":{"binary_data_output":true}}'
{ printf "\\x$(printf %02x $((${#header} >> 8)))\\x$(printf %02x $((${#header} & 255)))"; printf '%s' "$header"; printf '\x00\x00\x80\x3f\x00\x00\x00\x40'; } > $corpus/kserve_binary/binary
printf 'console=ttyS0 kokon.data=300:300:%064d:%064d panic=-1' 0 0 > $corpus/data_verity/cmdline
printf '\xff\xff{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1,2]}]}' > $corpus/kserve_binary/json
# The firmware's last pages hold its footer GUID table and metadata (the
# guest image's OVMFs, which `just image` or `just test` builds: the generic
# build for TDX, the AmdSevX64 build, with its hashes table, for SEV-SNP).
ovmf=.cache/vm/image/OVMF.fd
if [ -f "$ovmf" ]; then
  tail -c 4096 "$ovmf" > $corpus/ovmf_snp/tail
  tail -c 8192 "$ovmf" > $corpus/tdvf_metadata/tail
fi
if [ -f .cache/vm/image/OVMF.amdsev.fd ]; then
  tail -c 4096 .cache/vm/image/OVMF.amdsev.fd > $corpus/ovmf_snp/amdsev-tail
fi
for target in tdx_quote bundle_json ohttp wire_frame receipt policy snp_report tdx_collateral snp_cert_table ratls_cert eventlog qgs_message voucher payer_proof openai_request stream_decoders kserve_binary ovmf_snp tdvf_metadata nvidia_gpu_report ocsp_response nvidia_rim data_verity; do
  echo "fuzz: $target for ${seconds}s" >&2
  cargo fuzz run --sanitizer none "$target" "$corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3
done
