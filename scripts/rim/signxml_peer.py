#!/usr/bin/env python3
"""signxml, the XML signature library NVIDIA's local GPU verifier checks
RIMs with, as kokon's peer for NVIDIA RIM signatures (tests/tests/rim_peer.rs).

  sign UNSIGNED.xml KEY.pem CHAIN.pem OUT.xml
      An enveloped signature as NVIDIA's RIMs carry it: Canonical XML 1.1,
      ECDSA P-384 with SHA-384, a SHA-384 digest of the whole document, and
      the chain (PEM, signer first) in ds:X509Data.
  verify SIGNED.xml SIGNER.pem
      Verifies the signature under the signer's certificate, accepting only
      those algorithms; prints the number of Resource elements signed.
"""
import sys

from lxml import etree
from signxml import (CanonicalizationMethod, DigestAlgorithm, SignatureMethod,
                     XMLSigner, XMLVerifier, methods)
from signxml.verifier import SignatureConfiguration


def certificates(path):
    text = open(path).read()
    end = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + end + "\n" for part in text.split(end) if part.strip()]


def sign(unsigned, key, chain, out):
    root = etree.parse(unsigned).getroot()
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm=SignatureMethod.ECDSA_SHA384,
        digest_algorithm=DigestAlgorithm.SHA384,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    )
    signed = signer.sign(root, key=open(key, "rb").read(), cert=certificates(chain))
    with open(out, "wb") as f:
        f.write(etree.tostring(signed))


def verify(signed, signer):
    config = SignatureConfiguration(
        signature_methods=frozenset([SignatureMethod.ECDSA_SHA384]),
        digest_algorithms=frozenset([DigestAlgorithm.SHA384]),
    )
    result = XMLVerifier().verify(
        open(signed, "rb").read(),
        x509_cert=open(signer).read(),
        expect_config=config,
    )
    ns = "{http://standards.iso.org/iso/19770/-2/2015/schema.xsd}"
    print(len(result.signed_xml.findall(f"{ns}Payload/{ns}Resource")))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"sign": sign, "verify": verify}[command](*args)
