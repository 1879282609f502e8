"""Which URLs from remote data recall-dl may connect to."""

from __future__ import annotations

import pytest

from downloader.errors import UnsafeUrl
from downloader.urlpolicy import UrlPolicy, redact_url

PROD = UrlPolicy.for_api("https://us-east-1.recall.ai")
SIM = UrlPolicy.for_api("http://127.0.0.1:8000")


@pytest.mark.parametrize(
    "url",
    [
        "https://recallai-production-bot-data.s3.amazonaws.com/x/video.mp4?X-Amz-Signature=a",
        "https://us-west-2-recallai-production-bot-data.s3.amazonaws.com/a.mp4",
        "https://us-east-1.recall.ai/api/v1/download/participants?token=abc",
    ],
)
def test_production_hosts_allowed(url: str) -> None:
    assert PROD.check(url).host


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://recallai-production-bot-data.s3.amazonaws.com/a.mp4", "https"),
        ("https://evil.example.com/a.mp4", "allow-list"),
        ("https://recall.ai.evil.com/a.mp4", "allow-list"),
        ("https://169.254.169.254/latest/meta-data", "IP-literal"),
        ("https://user:pw@us-east-1.recall.ai/x", "credentials"),
        ("https://us-east-1.recall.ai:8443/x", "port"),
        ("http://127.0.0.1:9000/a.mp4", "https"),
        ("file:///etc/passwd", "host"),
        ("/relative/path", "host"),
    ],
)
def test_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        PROD.check(url)


def test_loopback_http_only_when_api_is_loopback_http() -> None:
    assert SIM.check("http://127.0.0.1:9123/media/a.mp4?sig=1").port == 9123
    assert SIM.check("http://localhost:9123/a").host == "localhost"
    with pytest.raises(UnsafeUrl):
        SIM.check("http://10.0.0.5/a.mp4")
    with pytest.raises(UnsafeUrl):
        UrlPolicy.for_api("http://api.internal:8000").check("http://127.0.0.1:1/a")


def test_extra_hosts_extend_the_list() -> None:
    policy = UrlPolicy.for_api("https://us-east-1.recall.ai", ["media.example.org"])
    assert policy.check("https://cdn.media.example.org/a.mp4")


def test_refusal_messages_never_carry_the_query_string() -> None:
    with pytest.raises(UnsafeUrl) as info:
        PROD.check("https://evil.example.com/a.mp4?X-Amz-Signature=SECRETSIG")
    assert "SECRETSIG" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("https://h.s3.amazonaws.com/p/v.mp4?X-Amz-Signature=s") == (
        "https://h.s3.amazonaws.com/p/v.mp4"
    )
    assert redact_url("http://127.0.0.1:8000/a?token=t") == "http://127.0.0.1:8000/a"
