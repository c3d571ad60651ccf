"""The SSRF guard: which URLs the node refuses to call (webhooks, remote sources)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from speak_encoder.errors import NetworkError
from speak_encoder.urlguard import UnsafeUrl, UrlGuard, address_problem, check_public_url

RPC = "/ip4/127.0.0.1/tcp/5001"


def fake_dns(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise NetworkError(f"cannot resolve {host!r}")
        return table[host]

    return resolve


def check(url: str, *, allow_private: bool = False, ipfs_rpc: str = RPC, dns=None) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(
        check_public_url(
            url, allow_private=allow_private, what="webhook_url", ipfs_rpc=ipfs_rpc, resolve=dns
        )
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.9.9.9", "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.1",
        "192.168.1.1", "169.254.169.254", "169.254.0.1", "0.0.0.0", "100.64.0.1",
        "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1",
        "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
        "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::1", "fec0::1", "2001:db8::1",
    ],
)  # fmt: skip
def test_non_public_addresses_have_a_problem(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.0.0.8/hook",
        "http://172.16.4.4/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",  # 127.0.0.1 in decimal
        "http://0x7f.1/hook",  # 127.0.0.1 in hex, short form
        "http://127.1:5001/api/v0/shutdown",
    ],
)
def test_private_targets_are_refused_with_real_resolution(url: str) -> None:
    with pytest.raises(UnsafeUrl, match=r"refused|never allowed"):
        check(url)


def test_any_bad_record_refuses_the_name() -> None:
    dns = fake_dns({"mixed.example": ["93.184.215.14", "10.1.2.3"]})
    with pytest.raises(UnsafeUrl, match=r"resolves to 10\.1\.2\.3, a private address"):
        check("https://mixed.example/hook", dns=dns)


def test_public_name_is_accepted() -> None:
    check("https://hooks.example/x", dns=fake_dns({"hooks.example": ["93.184.215.14"]}))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:25/", "only http and https"),
        ("example.com/hook", "only http and https"),
        ("http://user:pw@example.com/", "user names or passwords"),
        ("http://user@example.com/", "user names or passwords"),
        ("http:///nohost", "no host"),
        ("http://exa mple.com/", "control characters"),
        ("http://example.com:99999/", "malformed"),
        ("https://" + "a" * 3000 + ".com/", "longer than"),
    ],
)
def test_malformed_or_foreign_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl, match=reason):
        check(url, dns=fake_dns({"example.com": ["93.184.215.14"]}))


def test_allow_private_opens_private_addresses() -> None:
    check("http://127.0.0.1:8080/hook", allow_private=True)
    check("http://10.0.0.1/hook", allow_private=True)
    check("http://169.254.169.254/", allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5001/api/v0/id",
        "http://localhost:5001/api/v0/id",
        "http://[::1]:5001/api/v0/id",
        "http://0.0.0.0:5001/api/v0/id",
        "http://127.0.0.2:5001/api/v0/id",
    ],
)
def test_the_ipfs_rpc_is_never_reachable_even_with_allow_private(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="own IPFS RPC"):
        check(url, allow_private=True)


def test_the_ipfs_rpc_given_as_url_or_on_another_host() -> None:
    with pytest.raises(UnsafeUrl, match="own IPFS RPC"):
        check("http://127.0.0.1:5005/", allow_private=True, ipfs_rpc="http://127.0.0.1:5005")
    dns = fake_dns({"ipfs.lan": ["10.9.9.9"], "alias.lan": ["10.9.9.9"]})
    with pytest.raises(UnsafeUrl, match="own IPFS RPC"):
        check(
            "http://alias.lan:5001/",
            allow_private=True,
            ipfs_rpc="/dns4/ipfs.lan/tcp/5001",
            dns=dns,
        )
    # another port of the same host is fine in a lab
    check("http://alias.lan:8080/", allow_private=True, ipfs_rpc="/dns4/ipfs.lan/tcp/5001", dns=dns)


def test_unresolvable_host_is_a_network_error() -> None:
    with pytest.raises(NetworkError):
        check("https://nowhere.invalid/hook", dns=fake_dns({}))


def test_pin_connects_to_the_checked_address() -> None:
    guard = UrlGuard(allow_private=False, resolve=fake_dns({"hooks.example": ["93.184.215.14"]}))
    pinned = asyncio.run(guard.pin("https://hooks.example:8443/a/b?x=1", what="webhook_url"))
    assert pinned.connect_url == "https://93.184.215.14:8443/a/b?x=1"
    assert pinned.host_header == "hooks.example:8443"
    assert pinned.host == "hooks.example"
    guard6 = UrlGuard(allow_private=False, resolve=fake_dns({"v6.example": ["2606:4700::1111"]}))
    pinned6 = asyncio.run(guard6.pin("http://v6.example/h", what="webhook_url"))
    assert pinned6.connect_url == "http://[2606:4700::1111]/h"
    assert pinned6.host_header == "v6.example"
