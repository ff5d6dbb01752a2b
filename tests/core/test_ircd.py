"""Part 2 of the contract, "a real IRC server", against the pure core: operators, modes,
moderation and the everyday commands, each numeric checked in memory.

The contract tests (tests/contract/test_chat_ircd.py) check the user-visible
behaviour of the same rules over TCP against every implementation.
"""

from __future__ import annotations

import pytest
from core_helpers import SERVER, Harness, lenient_limits, parse_line, prefix_of

from echochat.core.passwords import PasswordHash, hash_password

SALT = b"0123456789abcdef"


def commands(lines: list[str]) -> list[str]:
    return [parse_line(line).command for line in lines]


def trio(h: Harness, channel: str = "#a") -> tuple[int, int, int]:
    """alice (the operator, who made the channel), bob and carol on it, nothing left to read."""
    alice, bob, carol = h.register("alice"), h.register("bob"), h.register("carol")
    h.join(alice, channel)
    h.join(bob, channel, alice)
    h.join(carol, channel, alice, bob)
    return alice, bob, carol


def mode_line(who: str, text: str) -> str:
    return f":{prefix_of(who)} MODE {text}"


# -- Channel operators and member modes ----------------------------------------------------


def test_the_creator_is_operator_and_a_new_channel_is_plus_nt() -> None:
    h = Harness()
    _, bob, _ = trio(h)
    h.send(bob, "NAMES #a", "MODE #a", "WHO #a", "WHOIS alice")
    lines = h.take(bob)
    assert lines[0] == f":{SERVER} 353 bob = #a :@alice bob carol"
    assert lines[2] == f":{SERVER} 324 bob #a +nt"
    flags = [parse_line(line).params[6] for line in lines if parse_line(line).command == "352"]
    assert flags == ["H@", "H", "H"]
    assert f":{SERVER} 319 bob alice :@#a" in lines


def test_op_and_voice_are_announced_as_one_mode_line_to_all() -> None:
    h = Harness()
    alice, bob, carol = trio(h)
    h.send(alice, "MODE #a +ov-n bob carol")
    expected = mode_line("alice", "#a +ov-n bob carol")
    for who in (alice, bob, carol):
        assert h.take(who) == [expected]
    h.send(carol, "NAMES #a")
    assert h.take(carol)[0] == f":{SERVER} 353 carol = #a :@alice @bob +carol"
    # Setting what is already set changes (and announces) nothing.
    h.send(alice, "MODE #a +o bob")
    assert h.take(alice) == []


def test_member_mode_errors() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    dave = h.register("dave")
    h.send(alice, "MODE #a +o dave", "MODE #a +v nobody")
    assert commands(h.take(alice)) == ["441", "401"]
    h.send(dave, "MODE #a +o dave")
    assert h.take(dave) == [f":{SERVER} 482 dave #a :You're not channel operator"]


def test_a_non_operator_changes_nothing() -> None:
    h = Harness()
    alice, bob, _ = trio(h)
    h.send(bob, "MODE #a +mik-nt+lbo key 1 x!*@* bob", "MODE #a +X")
    assert commands(h.take(bob)) == ["482", "472"]
    h.send(bob, "MODE #a", "TOPIC #a :hijack", "KICK #a alice", "INVITE dave #a")
    lines = h.take(bob)
    assert lines[0] == f":{SERVER} 324 bob #a +nt"
    assert commands(lines[1:]) == ["329", "482", "482", "401"]
    assert h.take(alice) == []


def test_unknown_modes_get_472_and_known_ones_still_apply() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    h.send(alice, "MODE #a +Xm")
    assert h.take(alice) == [
        f":{SERVER} 472 alice X :is unknown mode char to me",
        mode_line("alice", "#a +m"),
    ]


def test_at_most_six_changes_with_an_argument_per_command() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    masks = [f"m{i}!*@*" for i in range(8)]
    h.send(alice, "MODE #a +bbbbbbbb " + " ".join(masks))
    (line,) = h.take(alice)
    assert parse_line(line).params[1] == "+" + "b" * 6


# -- +b ------------------------------------------------------------------------------------


def test_bans_list_and_enforce_on_join_with_case_variants() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    h.send(alice, "MODE #a +b EVE")  # completed to EVE!*@*, matched ignoring case
    assert h.take(alice) == [mode_line("alice", "#a +b EVE!*@*")]
    h.send(alice, "MODE #a +b")
    lines = h.take(alice)
    assert commands(lines) == ["367", "368"]
    assert parse_line(lines[0]).params[1:4] == ["#a", "EVE!*@*", prefix_of("alice")]
    eve = h.register("eve")
    h.send(eve, "JOIN #A")
    assert h.take(eve) == [f":{SERVER} 474 eve #a :Cannot join channel (+b)"]
    h.send(alice, "MODE #a -b eve!*@*")
    h.send(eve, "JOIN #a")
    assert commands(h.take(eve))[0] == "JOIN"


@pytest.mark.parametrize(
    ("mask", "banned"),
    [
        ("*!*@127.0.0.1", True),
        ("e?e", True),
        ("*!eve@*", True),
        ("ev", False),
        ("eve!other@*", False),
        ("*!*@127.0.0.?", True),
    ],
)
def test_ban_masks_are_globs_over_nick_user_host(mask: str, banned: bool) -> None:
    h = Harness()
    alice = h.register("alice")
    h.join(alice, "#a")
    h.send(alice, f"MODE #a +b {mask}")
    eve = h.register("eve")
    h.send(eve, "JOIN #a")
    assert (commands(h.take(eve))[0] == "474") is banned


def test_a_banned_member_cannot_speak_or_change_nick_and_voice_overrides() -> None:
    h = Harness()
    alice, bob, _ = trio(h)
    h.send(alice, "MODE #a +b bob")
    h.take(bob)
    h.take(alice)
    h.send(bob, "PRIVMSG #a :hello", "NICK robert")
    assert commands(h.take(bob)) == ["404", "435"]
    assert h.take(alice) == []
    h.send(alice, "MODE #a +v bob")
    h.take(bob)
    h.take(alice)
    h.send(bob, "PRIVMSG #a :hello")
    assert h.take(alice) == [f":{prefix_of('bob')} PRIVMSG #a :hello"]


def test_a_nick_change_onto_a_ban_mask_mutes() -> None:
    h = Harness()
    alice, bob, _ = trio(h)
    h.send(alice, "MODE #a +b troll*!*@*")
    h.take(bob)
    h.send(bob, "NICK Troll2")
    h.take(alice)
    h.take(bob)
    h.send(bob, "PRIVMSG #a :boo")
    assert commands(h.take(bob)) == ["404"]
    assert h.take(alice) == []


def test_ban_list_is_bounded() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    for start in range(0, 70, 6):
        h.send(alice, "MODE #a +bbbbbb " + " ".join(f"m{i}" for i in range(start, start + 6)))
    lines = h.take(alice)
    assert "478" in commands(lines)
    h.send(alice, "MODE #a b")
    assert commands(h.take(alice)).count("367") == 64


# -- +i +k +l ------------------------------------------------------------------------------


def test_invite_only_and_invite_lets_one_user_past_it_once() -> None:
    h = Harness()
    alice, bob, _ = trio(h)
    h.send(alice, "MODE #a +i")
    h.take(bob)
    h.take(alice)
    dave = h.register("dave")
    h.send(dave, "JOIN #a")
    assert h.take(dave) == [f":{SERVER} 473 dave #a :Cannot join channel (+i)"]
    h.send(bob, "INVITE dave #a")  # on +i only operators invite
    assert commands(h.take(bob)) == ["482"]
    h.send(alice, "INVITE dave #a")
    assert h.take(alice) == [f":{SERVER} 341 alice dave #a"]
    assert h.take(dave) == [f":{prefix_of('alice')} INVITE dave :#a"]
    h.send(dave, "JOIN #A")
    assert commands(h.take(dave))[0] == "JOIN"
    h.send(dave, "PART #a", "JOIN #a")  # the invitation was used up
    assert commands(h.take(dave))[-1] == "473"


def test_an_invitation_dies_with_its_channel() -> None:
    # The race: invited to #a, which empties and is made again (+i) by someone else.
    h = Harness()
    alice = h.register("alice")
    dave = h.register("dave")
    h.join(alice, "#a")
    h.send(alice, "INVITE dave #a", "PART #a")
    h.take(dave)
    mallory = h.register("mallory")
    h.send(mallory, "JOIN #a", "MODE #a +i")
    h.send(dave, "JOIN #a")
    assert commands(h.take(dave)) == ["473"]


def test_invite_errors() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    dave = h.register("dave")
    h.send(dave, "INVITE alice #a")
    h.send(alice, "INVITE bob #a", "INVITE nobody #a", "INVITE dave #nowhere", "INVITE dave")
    assert commands(h.take(dave)) == ["442"]
    assert commands(h.take(alice)) == ["443", "401", "403", "461"]


def test_invite_to_an_away_user_says_so() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    dave = h.register("dave")
    h.send(dave, "AWAY :lunch")
    h.take(dave)
    h.send(alice, "INVITE dave #a")
    assert commands(h.take(alice)) == ["341", "301"]


def test_key() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    h.send(alice, "MODE #a +k sesame")
    assert h.take(alice) == [mode_line("alice", "#a +k sesame")]
    dave = h.register("dave")
    h.send(dave, "JOIN #a", "JOIN #a wrong", "JOIN #a SESAME", "MODE #a")
    lines = h.take(dave)
    assert commands(lines) == ["475", "475", "475", "324", "329"]
    assert lines[3] == f":{SERVER} 324 dave #a +ntk *"  # outsiders do not see the key
    h.send(dave, "JOIN #b,#a x,sesame")
    assert [parse_line(line).params[0] for line in h.take(dave) if "JOIN" in line] == ["#b", "#a"]
    h.take(alice)
    h.send(alice, "MODE #a", "MODE #a -k *", "MODE #a +k :bad key")
    lines = h.take(alice)
    assert lines[0] == f":{SERVER} 324 alice #a +ntk sesame"
    assert lines[2] == mode_line("alice", "#a -k *")
    assert commands(lines[3:]) == ["525"]


def test_limit() -> None:
    h = Harness()
    alice, _, _ = trio(h)
    h.send(alice, "MODE #a +l 3", "MODE #a +l 0", "MODE #a +l x")
    assert h.take(alice) == [mode_line("alice", "#a +l 3")]
    dave = h.register("dave")
    h.send(dave, "JOIN #a")
    assert h.take(dave) == [f":{SERVER} 471 dave #a :Cannot join channel (+l)"]
    h.send(alice, "INVITE dave #a")  # an invitation passes +i only, not +l
    h.send(dave, "JOIN #a")
    assert commands(h.take(dave)) == ["INVITE", "471"]
    h.send(alice, "MODE #a -l")
    assert h.take(alice)[-1] == mode_line("alice", "#a -l")
    h.send(dave, "JOIN #a")
    assert commands(h.take(dave))[0] == "JOIN"


# -- +m +n +s +t ---------------------------------------------------------------------------


def test_moderated_and_no_external_messages() -> None:
    h = Harness()
    alice, bob, carol = trio(h)
    dave = h.register("dave")
    h.send(dave, "PRIVMSG #a :from outside")
    assert h.take(dave) == [f":{SERVER} 404 dave #a :Cannot send to channel"]
    h.send(alice, "MODE #a -n+mv carol")
    h.take(carol)
    h.send(dave, "PRIVMSG #a :outside, -n but +m")  # +m stops outsiders too
    h.send(bob, "PRIVMSG #a :no voice")
    h.send(carol, "PRIVMSG #a :voiced")
    h.send(alice, "PRIVMSG #a :op")
    assert commands(h.take(dave)) == ["404"]
    assert commands(h.take(bob)) == ["MODE", "404", "PRIVMSG", "PRIVMSG"]
    h.send(alice, "MODE #a -m")
    h.send(dave, "PRIVMSG #a :now outsiders may")
    assert h.take(bob)[-1] == f":{prefix_of('dave')} PRIVMSG #a :now outsiders may"


def test_secret_channels_leak_through_no_command() -> None:
    h = Harness()
    alice, _, _ = trio(h, "#hidden")
    h.send(alice, "MODE #hidden +s", "TOPIC #hidden :plans")
    h.take(alice)
    dave = h.register("dave")
    h.send(
        dave,
        "LIST",
        "LIST #hidden",
        "NAMES #hidden",
        "WHO #hidden",
        "WHOIS alice",
        "TOPIC #hidden",
        "MODE #hidden b",
    )
    lines = h.take(dave)
    assert not any("#hidden" in line and "plans" in line for line in lines)
    assert not any(
        parse_line(line).command in ("322", "353", "352", "319", "367") for line in lines
    )
    assert f":{SERVER} 442 dave #hidden :You're not on that channel" in lines
    h.send(alice, "NAMES #hidden", "LIST")
    lines = h.take(alice)
    assert lines[0] == f":{SERVER} 353 alice @ #hidden :@alice bob carol"
    assert f":{SERVER} 322 alice #hidden 3 :plans" in lines


def test_topic_lock_and_333() -> None:
    h = Harness()
    alice, bob, _ = trio(h)
    h.send(bob, "TOPIC #a :mine")
    assert h.take(bob) == [f":{SERVER} 482 bob #a :You're not channel operator"]
    h.send(alice, "MODE #a -t")
    h.take(bob)
    h.send(bob, "TOPIC #a :mine")
    h.take(bob)
    h.send(alice, "TOPIC #a")
    assert h.take(alice)[-2:] == [
        f":{SERVER} 332 alice #a :mine",
        f":{SERVER} 333 alice #a {prefix_of('bob')} 1000",
    ]


# -- KICK ----------------------------------------------------------------------------------


def test_kick() -> None:
    h = Harness()
    alice, bob, carol = trio(h)
    h.send(alice, "KICK #a bob :behave")
    kick = f":{prefix_of('alice')} KICK #a bob :behave"
    for who in (alice, bob, carol):
        assert h.take(who) == [kick]
    h.send(bob, "PRIVMSG #a :back?")
    assert commands(h.take(bob)) == ["404"]
    h.send(alice, "KICK #a bob", "KICK #a nobody", "KICK #nowhere carol", "KICK #a")
    assert commands(h.take(alice)) == ["441", "401", "403", "461"]
    h.send(carol, "KICK #a alice")
    assert commands(h.take(carol)) == ["482"]
    h.send(bob, "KICK #a carol")
    assert commands(h.take(bob)) == ["442"]
    h.send(alice, "KICK #a carol")  # the default reason is the kicker's nick
    assert h.take(carol) == [f":{prefix_of('alice')} KICK #a carol :alice"]


def test_kick_several_and_the_last_member_kicked_out_ends_the_channel() -> None:
    h = Harness()
    alice, bob, carol = trio(h)
    h.send(alice, "KICK #a bob,carol", "KICK #a alice")
    assert commands(h.take(alice)) == ["KICK", "KICK", "KICK"]
    assert h.core.channel_count == 0
    assert h.take(bob) == [f":{prefix_of('alice')} KICK #a bob :alice"]
    assert carol not in h.closed


# -- AWAY, ISON, USERHOST, WHO, WHOIS, WHOWAS ----------------------------------------------


def test_away() -> None:
    h = Harness()
    alice, bob, _ = trio(h)
    h.send(bob, "AWAY :gone fishing")
    assert h.take(bob) == [f":{SERVER} 306 bob :You have been marked as being away"]
    h.send(alice, "PRIVMSG bob :hi", "NOTICE bob :hi", "WHOIS bob", "WHO bob", "USERHOST bob")
    lines = h.take(alice)
    assert lines[0] == f":{SERVER} 301 alice bob :gone fishing"  # once: not for NOTICE
    assert commands(lines).count("301") == 2  # and in WHOIS
    assert any(parse_line(line).params[6:7] == ["G"] for line in lines)
    assert lines[-1] == f":{SERVER} 302 alice :bob=-bob@127.0.0.1"
    h.take(bob)
    h.send(bob, "AWAY")
    assert h.take(bob) == [f":{SERVER} 305 bob :You are no longer marked as being away"]


def test_ison_and_userhost() -> None:
    h = Harness()
    alice = h.register("alice")
    h.register("bob")
    h.send(alice, "ISON BOB nobody alice", "USERHOST bob nobody", "ISON", "USERHOST")
    assert h.take(alice) == [
        f":{SERVER} 303 alice :bob alice",
        f":{SERVER} 302 alice :bob=+bob@127.0.0.1",
        f":{SERVER} 461 alice ISON :Not enough parameters",
        f":{SERVER} 461 alice USERHOST :Not enough parameters",
    ]


def test_who_masks_invisible_users_and_operators_only() -> None:
    h = Harness(lenient_limits(opers=(("root", PasswordHash.parse(hash_password("pw", SALT))),)))
    alice = h.register("alice")
    bob = h.register("bob")
    h.register("alfred")
    h.send(bob, "MODE bob +i", "OPER root pw")
    h.take(bob)
    h.send(alice, "WHO al*", "WHO b*", "WHO bob", "WHO * o")
    lines = h.take(alice)
    assert [parse_line(line).params[5] for line in lines if "352" in line] == [
        "alice",
        "alfred",
        "bob",  # by name, +i does not hide
    ]
    assert parse_line(lines[-3]).params[6] == "H*"
    assert lines[-1] == f":{SERVER} 315 alice * :End of WHO list"


def test_whois_in_full() -> None:
    h = Harness(lenient_limits(opers=(("root", PasswordHash.parse(hash_password("pw", SALT))),)))
    alice, bob, _ = trio(h)
    h.send(bob, "OPER root pw", "AWAY :afk")
    h.take(bob)
    h.advance(42)
    h.send(alice, "WHOIS bob")
    lines = h.take(alice)
    assert commands(lines) == ["311", "319", "312", "301", "313", "317", "318"]
    assert lines[1] == f":{SERVER} 319 alice bob :#a"
    assert lines[5] == f":{SERVER} 317 alice bob 42 1000 :seconds idle, signon time"


def test_whowas() -> None:
    h = Harness()
    alice = h.register("alice")
    bob = h.register("bob")
    h.send(bob, "NICK robert")
    h.send(bob, "QUIT")
    h.send(alice, "WHOWAS bob", "WHOWAS nobody", "WHOWAS")
    lines = h.take(alice)
    assert commands(lines) == ["314", "312", "369", "406", "369", "431"]
    assert lines[0] == f":{SERVER} 314 alice bob bob 127.0.0.1 * :Real bob"


def test_whowas_is_bounded_and_newest_first() -> None:
    h = Harness()
    alice = h.register("alice")
    bob = h.register("b0")
    for i in range(1, 300):
        h.send(bob, f"NICK b{i}")
    h.send(bob, "NICK b0", "NICK bx")
    assert len(h.core.whowas) == 256
    h.send(alice, "WHOWAS b0", "WHOWAS b0 1", "WHOWAS b1")
    lines = h.take(alice)
    assert commands(lines) == ["314", "312", "369", "314", "312", "369", "406", "369"]


# -- MOTD, VERSION, TIME, INFO, LUSERS, user modes -----------------------------------------


def test_motd_from_the_limits() -> None:
    h = Harness(lenient_limits(motd=("Welcome!", "", "Be kind.")))
    conn = h.connect()
    h.send(conn, "NICK alice", "USER a 0 * :A")
    lines = h.take(conn)
    assert lines[-5:] == [
        f":{SERVER} 375 alice :- {SERVER} Message of the day - ",
        f":{SERVER} 372 alice :- Welcome!",
        f":{SERVER} 372 alice :- ",
        f":{SERVER} 372 alice :- Be kind.",
        f":{SERVER} 376 alice :End of /MOTD command.",
    ]
    h.send(conn, "MOTD")
    assert commands(h.take(conn)) == ["375", "372", "372", "372", "376"]


def test_version_time_info() -> None:
    h = Harness()
    h.core.epoch = 1_700_000_000.0 - h.now
    alice = h.register("alice")
    h.send(alice, "VERSION", "TIME", "INFO")
    lines = h.take(alice)
    assert commands(lines) == ["351", "005", "005", "391", "371", "371", "371", "374"]
    assert lines[3] == f":{SERVER} 391 alice {SERVER} :Tuesday November 14 2023 -- 22:13:20 +00:00"


def test_user_modes() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "MODE alice +iw", "MODE alice +o", "MODE alice", "MODE alice -i+X")
    assert h.take(alice) == [
        f":{prefix_of('alice')} MODE alice :+iw",
        f":{SERVER} 221 alice +iw",
        f":{SERVER} 501 alice :Unknown MODE flag",
        f":{prefix_of('alice')} MODE alice :-i",
    ]


def test_statusmsg_reaches_only_members_with_that_status() -> None:
    h = Harness()
    alice, bob, carol = trio(h)
    h.send(alice, "MODE #a +v bob")
    for who in (alice, bob, carol):
        h.take(who)
    h.send(carol, "PRIVMSG @#a :ops only", "PRIVMSG +#a :voice and up")
    assert h.take(alice) == [
        f":{prefix_of('carol')} PRIVMSG @#a :ops only",
        f":{prefix_of('carol')} PRIVMSG +#a :voice and up",
    ]
    assert h.take(bob) == [f":{prefix_of('carol')} PRIVMSG +#a :voice and up"]
    assert h.take(carol) == []


def test_chanlimit() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "JOIN " + ",".join(f"#c{i}" for i in range(51)))
    assert commands(h.take(alice))[-1] == "405"
    assert len(h.core._clients[alice].channels) == 50


# -- Server password and operators ---------------------------------------------------------


def hashed(password: str) -> PasswordHash:
    return PasswordHash.parse(hash_password(password, SALT))


@pytest.mark.parametrize("lines", [[], ["PASS wrong"], ["PASS"], ["PASS secret2"]])
def test_a_wrong_or_missing_server_password_closes_with_464(lines: list[str]) -> None:
    h = Harness(lenient_limits(password_hash=hashed("secret")))
    conn = h.connect()
    h.send(conn, *lines, "NICK alice", "USER a 0 * :A")
    got = h.take(conn)
    assert got[-1] == f":{SERVER} 464 * :Password incorrect" or commands(got) == ["461", "464"]
    assert h.closed[conn].farewell == b"ERROR :Closing link (Bad password)\r\n"


def test_the_right_server_password_registers_and_pass_after_is_462() -> None:
    h = Harness(lenient_limits(password_hash=hashed("secret")))
    conn = h.connect()
    h.send(conn, "PASS secret", "NICK alice", "USER a 0 * :A", "PASS secret")
    lines = h.take(conn)
    assert commands(lines)[0] == "001"
    assert commands(lines)[-1] == "462"


def test_oper_kill_wallops() -> None:
    h = Harness(lenient_limits(opers=(("root", hashed("pw")),)))
    alice, bob, carol = trio(h)
    h.send(bob, "KILL carol :spam", "WALLOPS :hi", "OPER root wrong", "OPER nobody pw")
    assert h.take(bob) == [
        f":{SERVER} 481 bob :Permission Denied- You're not an IRC operator",
        f":{SERVER} 481 bob :Permission Denied- You're not an IRC operator",
        # The same answer whether the name or the password was wrong.
        f":{SERVER} 464 bob :Password incorrect",
        f":{SERVER} 464 bob :Password incorrect",
    ]
    h.send(bob, "OPER root pw")
    assert h.take(bob) == [
        f":{prefix_of('bob')} MODE bob :+o",
        f":{SERVER} 381 bob :You are now an IRC operator",
    ]
    h.send(alice, "MODE alice +w")
    h.take(alice)
    h.send(bob, "WALLOPS :maintenance at noon")
    wallops = f":{prefix_of('bob')} WALLOPS :maintenance at noon"
    assert h.take(alice) == [wallops]
    assert h.take(bob) == [wallops]
    assert h.take(carol) == []
    h.send(bob, "KILL carol :spam", "KILL nobody :x", "KILL carol")
    assert h.take(carol) == [f":{prefix_of('bob')} KILL carol :spam"]
    assert h.closed[carol].farewell == b"ERROR :Closing link (Killed (bob (spam)))\r\n"
    assert h.take(alice) == [f":{prefix_of('carol')} QUIT :Killed (bob (spam))"]
    assert commands(h.take(bob)) == ["QUIT", "401", "461"]
    h.send(alice, "LUSERS")
    assert f":{SERVER} 252 alice 1 :operator(s) online" in h.take(alice)


def test_oper_without_any_operators_configured() -> None:
    h = Harness()
    alice = h.register("alice")
    h.send(alice, "OPER root pw", "OPER root")
    assert commands(h.take(alice)) == ["491", "461"]


def test_an_empty_realname_gets_461() -> None:
    h = Harness()
    conn = h.connect()
    h.send(conn, "NICK alice", "USER a 0 * :")
    assert h.take(conn) == [f":{SERVER} 461 * USER :Not enough parameters"]
