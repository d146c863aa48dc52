"""The kubelet API's self-signed serving pair when no --tls-cert-file is given:
`<root-dir>/pki/kubelet.crt` and `kubelet.key`, as the kubelet makes them
(k/k pkg/kubelet/certificate: CN `<host>@<timestamp>`, SANs the node name,
localhost and the node IPs). Reused while it exists; the key is 0600."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def ensure_self_signed(cert_dir: Path, node_name: str, ips: Sequence[str]) -> tuple[str, str]:
    cert, key = cert_dir / "kubelet.crt", cert_dir / "kubelet.key"
    if cert.exists() and key.exists():
        return str(cert), str(key)
    cert_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{node_name}@{int(now.timestamp())}")])
    sans: list[x509.GeneralName] = [x509.DNSName(node_name), x509.DNSName("localhost")]
    for ip in {*ips, "127.0.0.1"}:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            pass
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=365))
                   .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                                key_cert_sign=True, content_commitment=False,
                                                data_encipherment=False, key_agreement=False,
                                                crl_sign=False, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .sign(private, hashes.SHA256()))
    tmp_key = key.with_suffix(".key.tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    tmp_cert = cert.with_suffix(".crt.tmp")
    tmp_cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_key, key)
    os.replace(tmp_cert, cert)
    return str(cert), str(key)
