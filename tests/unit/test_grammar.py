import shlex

import pytest

from harness.errors import ModuleError
from harness.guest.modclient import Prot, parse_reply, req


def test_request_lines():
    assert req("map", id=1, iova=0x1000, prot=Prot.READ | Prot.CACHE) == \
        "map id=0x1 iova=0x1000 prot=read|cache"
    assert Prot(0).wire() == "none"


def test_reply_with_quoted_reason():
    r = parse_reply('3 map ret=-17 src=check why="overlaps an existing mapping"')
    assert (r.index, r.verb, r.ret, r.src) == (3, "map", -17, "check")
    assert r.fields["why"] == "overlaps an existing mapping"
    with pytest.raises(ModuleError):
        r.ok()


def test_reply_numbers_are_hex_or_decimal():
    r = parse_reply("0 create ret=0 id=2 ttbr=0x41000000 ias=48")
    assert r.num("id") == 2 and r.num("ttbr") == 0x41000000 and r.num("ias") == 48


@pytest.mark.parametrize("line", ["", "garbage", "x map ret=0", "0 map mapped=1"])
def test_replies_outside_the_grammar_raise(line):
    with pytest.raises(ModuleError):
        parse_reply(line)


def test_ok_with_nothing_mapped_is_a_contract_violation():
    from harness.errors import ContractViolation
    from harness.guest.modclient import check_contract

    check_contract("map ...", parse_reply("0 map ret=0 src=pgtable mapped=0x1000"))
    check_contract("map ...", parse_reply("0 map ret=-22 src=pgtable mapped=0x0"))
    check_contract("map ...", parse_reply("0 map ret=-22 src=check why=x"))
    with pytest.raises(ContractViolation):
        check_contract("map ...", parse_reply("0 map_unchecked ret=0 src=pgtable mapped=0x0"))


def test_cli_passes_unknown_options_to_pytest_only_for_run_and_selftest():
    from harness.cli import parser

    args, unknown = parser().parse_known_args(["run", "-q", "-k", "2M", "--tree", "/t"])
    assert str(args.tree) == "/t" and unknown == ["-q", "-k", "2M"]


def test_create_request_carries_quirks_and_coherent_walk_as_the_module_parses_them():
    from harness.guest.modclient import Quirk, create_request

    line = create_request(48, 52, 0x20010000, Quirk.ARM_NS | Quirk.ARM_HD, coherent_walk=False)
    assert line == "create ias=0x30 oas=0x34 pgsizes=0x20010000 quirks=0x81 coherent_walk=0"
    assert create_request().endswith("quirks=0x0 coherent_walk=1")  # a flag, not a number


def test_table_info_reads_the_tcr_fields():
    from harness.guest.modclient import Tcr, table_info

    r = parse_reply("0 create ret=0 id=3 fmt=arm64-lpae-s1 ttbr=0x41230000 mair=0xf404ff44 "
                    "ias=48 oas=52 pgsizes=0x40020010000 quirks=0x41 coherent_walk=0 "
                    "tcr_t0sz=16 tcr_tg0=1 tcr_irgn0=0 tcr_orgn0=1 tcr_sh0=2 tcr_ips=6")
    info = table_info(r)
    assert (info.id, info.ias, info.oas, info.pgsizes) == (3, 48, 52, 0x40020010000)
    assert info.quirks == 0x41 and info.coherent_walk is False
    assert info.tcr == Tcr(t0sz=16, tg0=1, irgn0=0, orgn0=1, sh0=2, ips=6)
    with pytest.raises(ModuleError):  # a protocol-3 reply has no TCR: refused, not guessed
        table_info(parse_reply("0 info ret=0 id=1 ttbr=0x1 mair=0x0 ias=48 oas=48 pgsizes=0x1000"))


@pytest.mark.parametrize("line", [
    "12 map ret=0 src=pgtable mapped=0x1000",
    "0 create ret=0 id=1 ttbr=0x41ea5000 mair=0xfffffffff404ff44\tias=48",
    "3 map ret=-22 src=check why='pgsize 0x3000 not in the bitmap'",
    '4 unmap ret=-22 src=check why="a \\"quoted\\" word"',
    "5 iova_to_phys ret=0 phys=0x1\\ 2",
])
def test_replies_parse_as_the_shell_would_quote_them(line):
    """The fast path (no quotes, no backslash: plain split) and shlex agree on every line."""
    words = shlex.split(line)
    reply = parse_reply(line)
    assert (str(reply.index), reply.verb) == (words[0], words[1])
    assert {"ret": str(reply.ret), **({"src": reply.src} if reply.src else {}), **reply.fields} \
        == dict(w.split("=", 1) for w in words[2:] if "=" in w)
