"""A registry token realm for tests/test_artifacts_registry.py (the docker/OCI token flow Harbor's
/service/token implements): `python tests/token_realm.py ADDRESS PORT CERT KEY SIGNING_KEY USER:PASSWORD`.

GET /token?service=...&scope=repository:<name>:<actions> answers {"token": <RS256 JWT>} for distribution's
`auth.token` (kid = the libtrust key id of the signing key's certificate in its rootcertbundle). Anonymous
requests get `pull` only; `push` needs the Basic credential given on the command line (a test value).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import ssl
import sys
import time
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "test-token-issuer"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_id(public_der: bytes) -> str:
    """libtrust's key id: base32 of the first 240 bits of sha256(DER SubjectPublicKeyInfo), in groups of 4."""
    text = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def main(address: str, port: str, cert: str, key: str, signing_key: str, credential: str) -> None:
    with open(signing_key, "rb") as f:
        loaded = serialization.load_pem_private_key(f.read(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    private: rsa.RSAPrivateKey = loaded
    public_der = private.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = key_id(public_der)
    expected = "Basic " + base64.b64encode(credential.encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            authorized = self.headers.get("Authorization") == expected
            if self.headers.get("Authorization") and not authorized:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                granted = [a for a in actions.split(",") if a == "pull" or authorized]
                access.append({"type": kind, "name": name, "actions": granted})
            now = int(time.time())
            header = {"typ": "JWT", "alg": "RS256", "kid": kid}
            claims = {"iss": ISSUER, "sub": "admin" if authorized else "", "aud": query["service"][0],
                      "exp": now + 300, "nbf": now - 10, "iat": now, "jti": str(now), "access": access}
            signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
            signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
            body = json.dumps({"token": f"{signing_input}.{b64(signature)}", "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer((address, int(port)), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:])
