"""MODE: a channel's modes and a user's own, read through the tables of ``state``.

A channel change is applied in full or not at all by its operator: a
non-operator gets 482 and changes nothing. What did change is announced to
every member as one MODE line per command, with only the effective changes
(setting +m twice announces it once).
"""

from __future__ import annotations

from dataclasses import dataclass

from echochat.core.errors import CommandError
from echochat.core.limits import KEYLEN, MAXBANS, MODES
from echochat.core.message import ascii_lower, token
from echochat.core.network import Network
from echochat.core.state import (
    CHANNEL_MODES,
    USER_MODES,
    Ban,
    Channel,
    Client,
    ModeKind,
    compile_mask,
    normalise_mask,
)


def mode(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "MODE")
    if params[0].startswith("#"):
        channel_mode(net, client, net._find_channel(params[0]), params[1:])
    else:
        user_mode(net, client, params[0], params[1:])


@dataclass(frozen=True, slots=True)
class Change:
    """One letter of a MODE command: +o bob, -k, +m."""

    adding: bool
    letter: str
    arg: str | None

    @property
    def sign(self) -> str:
        return "+" if self.adding else "-"


def _parse(changes: str, args: list[str]) -> tuple[list[Change], list[str]]:
    """The changes with known letters, each with its argument, and the unknown letters."""
    parsed: list[Change] = []
    unknown: list[str] = []
    adding = True
    pending = iter(args)
    for letter in changes:
        if letter in "+-":
            adding = letter == "+"
            continue
        kind = CHANNEL_MODES.get(letter)
        if kind is None:
            unknown.append(letter)
            continue
        takes = kind in (ModeKind.MEMBER, ModeKind.LIST, ModeKind.ALWAYS) or (
            kind is ModeKind.WHEN_SET and adding
        )
        parsed.append(Change(adding, letter, next(pending, None) if takes else None))
    return parsed, unknown


def channel_mode(net: Network, client: Client, channel: Channel, params: list[str]) -> None:
    if not params:
        letters, args = channel.mode_string(show_key=client.conn in channel.members)
        net._numeric(client, "324", [channel.name, letters, *args], None)
        net._numeric(client, "329", [channel.name, str(int(channel.created_at))], None)
        return
    parsed, unknown = _parse(params[0], params[1:])
    for letter in unknown:
        net._numeric(client, "472", [token(letter)], "is unknown mode char to me")
    # +b without a mask asks for the list, which anyone may.
    changes = [change for change in parsed if change.letter != "b" or change.arg is not None]
    if len(changes) < len(parsed):
        send_bans(net, client, channel)
    if not changes:
        return
    if client.conn not in channel.ops:
        raise CommandError("482", [channel.name], "You're not channel operator")
    done: list[tuple[Change, str]] = []
    with_argument = 0
    for change in changes:
        if CHANNEL_MODES[change.letter] is not ModeKind.FLAG:
            if with_argument >= MODES:
                continue  # More than MODES changes with an argument are ignored.
            with_argument += 1
        try:
            shown = _apply(net, client, channel, change)
        except CommandError as error:
            net._numeric(client, error.numeric, error.params, error.text)
            continue
        if shown is not None:
            done.append((change, shown))
    if done:
        announce(net, client, channel, done)


def _apply(net: Network, client: Client, channel: Channel, change: Change) -> str | None:
    """Make one change; the argument to announce ("" for none), or None if nothing changed."""
    adding, letter, arg = change.adding, change.letter, change.arg
    kind = CHANNEL_MODES[letter]
    if kind is ModeKind.FLAG:
        if (letter in channel.modes) == adding:
            return None
        (channel.modes.add if adding else channel.modes.discard)(letter)
        return ""
    if kind is ModeKind.MEMBER:
        return _member_mode(net, channel, adding, letter, arg)
    if kind is ModeKind.LIST:
        return _ban(net, client, channel, adding, str(arg))
    if letter == "k":
        return _key(channel, adding, arg)
    return _limit(channel, adding, arg)


def _member_mode(
    net: Network, channel: Channel, adding: bool, letter: str, nick: str | None
) -> str | None:
    if nick is None:
        return None
    target = net._find_user(nick)
    if target is None:
        raise CommandError("401", [token(nick)], "No such nick/channel")
    if target.conn not in channel.members:
        raise CommandError("441", [target.name, channel.name], "They aren't on that channel")
    holders = channel.ops if letter == "o" else channel.voiced
    if (target.conn in holders) == adding:
        return None
    (holders.add if adding else holders.discard)(target.conn)
    return target.name


def _ban(net: Network, client: Client, channel: Channel, adding: bool, mask: str) -> str | None:
    mask = normalise_mask(mask)
    if " " in mask or mask.startswith(":"):
        return None
    folded = ascii_lower(mask)
    if adding:
        if folded in channel.bans:
            return None
        if len(channel.bans) >= MAXBANS:
            raise CommandError("478", [channel.name, mask], "Channel ban list is full")
        channel.bans[folded] = Ban(mask, compile_mask(mask), client.prefix, net.wall_time)
    elif channel.bans.pop(folded, None) is None:
        return None
    # Who is banned changed: work it out again for every member, now, so that
    # speaking only looks the answer up.
    for member in channel.members.values():
        channel.recheck_ban(member)
    return mask


def _key(channel: Channel, adding: bool, key: str | None) -> str | None:
    if not adding:
        if channel.key is None:
            return None
        channel.key = None
        return "*"
    if not key or len(key) > KEYLEN or any(c in key for c in ", :"):
        raise CommandError("525", [channel.name], "Key is not well-formed")
    if key == channel.key:
        return None
    channel.key = key
    return key


def _limit(channel: Channel, adding: bool, value: str | None) -> str | None:
    if not adding:
        if channel.limit is None:
            return None
        channel.limit = None
        return ""
    if value is None or not value.isdigit() or int(value) < 1:
        return None
    if int(value) == channel.limit:
        return None
    channel.limit = int(value)
    return str(channel.limit)


def announce(
    net: Network, client: Client, channel: Channel, done: list[tuple[Change, str]]
) -> None:
    """One MODE line for all the changes: ``+o-v+l bob carol 10``."""
    letters = ""
    sign = ""
    args: list[str] = []
    for change, arg in done:
        if change.sign != sign:
            sign = change.sign
            letters += sign
        letters += change.letter
        if arg:
            args.append(arg)
    line = net._line(client.prefix, "MODE", [channel.name, letters, *args], None)
    net._send_to_all(channel.members.values(), line)


def send_bans(net: Network, client: Client, channel: Channel) -> None:
    if net._sees(client, channel):
        for ban in channel.bans.values():
            params = [channel.name, ban.mask, ban.set_by, str(int(ban.set_at))]
            net._numeric(client, "367", params, None)
    net._numeric(client, "368", [channel.name], "End of channel ban list")


def user_mode(net: Network, client: Client, nick: str, params: list[str]) -> None:
    user = net._find_target(nick)
    if user is not client:
        raise CommandError("502", [], "Can't change or view modes for other users")
    if not params:
        net._numeric(client, "221", ["+" + "".join(sorted(client.modes))], None)
        return
    adding = True
    changed = ""
    sign = ""
    unknown = False
    for letter in params[0]:
        if letter in "+-":
            adding = letter == "+"
            continue
        # +o only comes from OPER; anyone may drop it.
        if letter not in USER_MODES or (letter == "o" and adding):
            unknown = unknown or letter not in USER_MODES
            continue
        if (letter in client.modes) == adding:
            continue
        (client.modes.add if adding else client.modes.discard)(letter)
        if sign != ("+" if adding else "-"):
            sign = "+" if adding else "-"
            changed += sign
        changed += letter
    if unknown:
        net._numeric(client, "501", [], "Unknown MODE flag")
    if changed:
        net._send(client, net._line(client.prefix, "MODE", [str(client.nick)], changed))
