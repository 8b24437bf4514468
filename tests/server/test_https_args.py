"""`--ssl-certfile`/`--ssl-keyfile` (or SSL_CERTFILE/SSL_KEYFILE): both or neither, existing
files, a one-line reason otherwise. (Serving HTTPS for real: tests/browser/test_https.py.)"""

from __future__ import annotations

import pytest

from server.__main__ import main, parse_args, tls_files


def test_no_certificate_is_plain_http():
    assert tls_files(parse_args([]), {}) is None


def test_files_from_the_command_line_or_the_environment(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("c")
    key.write_text("k")
    args = parse_args(["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)])
    assert tls_files(args, {}) == (cert, key)
    environ = {"SSL_CERTFILE": str(cert), "SSL_KEYFILE": str(key)}
    assert tls_files(parse_args([]), environ) == (cert, key)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--ssl-certfile", "{cert}"], "needs both --ssl-certfile and --ssl-keyfile"),
        (["--ssl-keyfile", "{cert}"], "needs both --ssl-certfile and --ssl-keyfile"),
        (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{missing}"], "--ssl-keyfile .*: no such"),
    ],
)
def test_the_entry_point_exits_with_the_reason(tmp_path, monkeypatch, argv, words):
    cert = tmp_path / "cert.pem"
    cert.write_text("c")
    argv = [a.format(cert=cert, missing=tmp_path / "missing.pem") for a in argv]
    monkeypatch.delenv("SSL_CERTFILE", raising=False)
    monkeypatch.delenv("SSL_KEYFILE", raising=False)
    with pytest.raises(SystemExit, match=f"configuration error: .*{words}"):
        main(argv)
