"""The throwaway PKI: a CA, the certificates issued from it, and kubeconfigs embedding them."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.controlplane.common import SERVICE_CIDR


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes


@dataclass
class Pki:
    """A throwaway CA and the certificates issued from it."""

    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    _now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @classmethod
    def create(cls, common_name: str = "canary-bot-local-ca") -> Pki:
        """A new CA, valid for a year."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = _name(common_name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(ca_key=key, ca_cert=cert, _now=now)

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM-encoded."""
        return _pem_cert(self.ca_cert)

    @property
    def ca_key_pem(self) -> bytes:
        """The CA key, PEM-encoded (the controller manager signs with it)."""
        return _pem_key(self.ca_key)

    def issue(
        self,
        common_name: str,
        *,
        organization: str | None = None,
        server_names: Sequence[str] = (),
        server_ips: Sequence[str] = (),
        client: bool = False,
    ) -> KeyPair:
        """Issue a client and/or serving certificate signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server_names or server_ips:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._now - datetime.timedelta(hours=1))
            .not_valid_after(self._now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        return KeyPair(cert_pem=_pem_cert(cert), key_pem=_pem_key(key))


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner may read (keys, kubeconfigs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def kubeconfig(server: str, ca_pem: bytes, pair: KeyPair, user: str) -> str:
    """A self-contained kubeconfig (certificates embedded) for one identity."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "canary-bot-local",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(pair.cert_pem),
                    "client-key-data": b64(pair.key_pem),
                },
            }
        ],
        "contexts": [
            {"name": "canary-bot-local", "context": {"cluster": "canary-bot-local", "user": user}}
        ],
        "current-context": "canary-bot-local",
    }
    # JSON is valid YAML, and keeps this module free of a YAML dependency.
    return json.dumps(config, indent=2) + "\n"


def write_cluster_pki(pki_dir: Path, workdir: Path, server: str) -> ssl.SSLContext:
    """Write every certificate, key and kubeconfig a cluster needs; return an admin context.

    ``pki_dir`` gets the CA, the API server's serving certificate, the service-account
    key pair, the front-proxy CA and the admin client pair; ``workdir`` gets one
    kubeconfig per identity (admin, controller manager, scheduler, kwok) for ``server``.
    """
    pki = Pki.create()
    write_private(pki_dir / "ca.key", pki.ca_key_pem)
    (pki_dir / "ca.crt").write_bytes(pki.ca_pem)

    service_ip = str(next(iter(ipaddress.ip_network(SERVICE_CIDR).hosts())))
    serving = pki.issue(
        "kube-apiserver",
        server_names=[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        server_ips=["127.0.0.1", service_ip],
    )
    (pki_dir / "apiserver.crt").write_bytes(serving.cert_pem)
    write_private(pki_dir / "apiserver.key", serving.key_pem)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(pki_dir / "sa.key", _pem_key(sa_key))
    (pki_dir / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    front_proxy = Pki.create("canary-bot-front-proxy-ca")
    (pki_dir / "front-proxy-ca.crt").write_bytes(front_proxy.ca_pem)
    proxy_client = front_proxy.issue("front-proxy-client", client=True)
    (pki_dir / "front-proxy-client.crt").write_bytes(proxy_client.cert_pem)
    write_private(pki_dir / "front-proxy-client.key", proxy_client.key_pem)

    admin = pki.issue("canary-bot-admin", organization="system:masters", client=True)
    (pki_dir / "admin.crt").write_bytes(admin.cert_pem)
    write_private(pki_dir / "admin.key", admin.key_pem)
    identities = {
        "kubeconfig": ("canary-bot-admin", admin),
        "kube-controller-manager.kubeconfig": (
            "system:kube-controller-manager",
            pki.issue("system:kube-controller-manager", client=True),
        ),
        "kube-scheduler.kubeconfig": (
            "system:kube-scheduler",
            pki.issue("system:kube-scheduler", client=True),
        ),
        # kwok writes status of nodes and pods and deletes pods: admin rights.
        "kwok.kubeconfig": (
            "kwok",
            pki.issue("kwok", organization="system:masters", client=True),
        ),
    }
    for filename, (user, pair) in identities.items():
        config = kubeconfig(server, pki.ca_pem, pair, user)
        write_private(workdir / filename, config.encode())

    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return context
