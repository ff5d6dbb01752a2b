"""Channel membership and what members see: JOIN, PART, KICK, INVITE, TOPIC, NAMES.

Every way into a channel goes through ``join_one``, which checks its key,
limit, invitation and bans; an invitation only lets its holder past +i.
"""

from __future__ import annotations

from echochat.core.errors import CommandError
from echochat.core.limits import CHANLIMIT, CHANNELLEN, KICKLEN, TOPICLEN
from echochat.core.message import ascii_lower, token
from echochat.core.network import Network
from echochat.core.state import Channel, Client

_CHANNEL_FORBIDDEN = frozenset(" ,\x07\0\r\n")


def join(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "JOIN")
    if params[0] == "0":
        for channel in list(client.channels.values()):
            part_one(net, client, channel, None)
        return
    keys = params[1].split(",") if len(params) > 1 else []
    names = params[0].split(",")
    key_of = {ascii_lower(name): keys[i] for i, name in enumerate(names) if i < len(keys)}
    net._each_target(
        client, params[0], lambda name: join_one(net, client, name, key_of.get(ascii_lower(name)))
    )


def join_one(net: Network, client: Client, name: str, key: str | None) -> None:
    if (
        not name.startswith("#")
        or len(name) < 2
        or len(name.encode()) > CHANNELLEN
        or not _CHANNEL_FORBIDDEN.isdisjoint(name)
    ):
        raise CommandError("403", [token(name)], "No such channel")
    folded = ascii_lower(name)
    channel = net._channels.get(folded)
    if channel is not None and client.conn in channel.members:
        return
    if len(client.channels) >= CHANLIMIT:
        raise CommandError("405", [token(name)], "You have joined too many channels")
    if channel is None:
        # Its first member is its operator.
        channel = Channel(name, created_at=net.wall_time)
        net._channels[folded] = channel
        channel.ops.add(client.conn)
    else:
        check_entry(client, channel, key)
    client.invites.pop(folded, None)
    channel.members[client.conn] = client
    client.channels[folded] = channel
    net._send_to_all(
        channel.members.values(), net._line(client.prefix, "JOIN", [channel.name], None)
    )
    if channel.topic:
        send_topic(net, client, channel)
    send_names(net, client, channel)


def check_entry(client: Client, channel: Channel, key: str | None) -> None:
    """Refuse ``client`` entry to ``channel`` with the numeric its modes give."""
    if channel.key is not None and key != channel.key:
        raise CommandError("475", [channel.name], "Cannot join channel (+k)")
    if channel.limit is not None and len(channel.members) >= channel.limit:
        raise CommandError("471", [channel.name], "Cannot join channel (+l)")
    invited = client.invites.get(ascii_lower(channel.name)) is channel
    if "i" in channel.modes and not invited:
        raise CommandError("473", [channel.name], "Cannot join channel (+i)")
    if channel.bans and channel.is_banned(client):
        raise CommandError("474", [channel.name], "Cannot join channel (+b)")


def part(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "PART")
    reason = params[1] if len(params) > 1 else None

    def part_named(name: str) -> None:
        channel = net._find_channel(name)
        if client.conn not in channel.members:
            raise CommandError("442", [channel.name], "You're not on that channel")
        part_one(net, client, channel, reason)

    net._each_target(client, params[0], part_named)


def part_one(net: Network, client: Client, channel: Channel, reason: str | None) -> None:
    line = net._line(client.prefix, "PART", [channel.name], reason)
    net._send_to_all(channel.members.values(), line)
    net._leave(client, channel)


def member_channel(net: Network, client: Client, name: str) -> Channel:
    """The channel ``name``, which ``client`` must be on (403, 442)."""
    channel = net._find_channel(name)
    if client.conn not in channel.members:
        raise CommandError("442", [channel.name], "You're not on that channel")
    return channel


def require_op(client: Client, channel: Channel) -> None:
    if client.conn not in channel.ops:
        raise CommandError("482", [channel.name], "You're not channel operator")


def kick(net: Network, client: Client, params: list[str]) -> None:
    """KICK #a nick[,nick] [:reason], or as many channels as nicks, paired."""
    net._need(params, 2, "KICK")
    channels, nicks = params[0].split(","), params[1].split(",")
    if len(channels) == 1:
        channels *= len(nicks)
    if len(channels) != len(nicks):
        raise CommandError("461", ["KICK"], "Not enough parameters")
    reason = (params[2] if len(params) > 2 and params[2] else str(client.nick))[:KICKLEN]
    for name, nick in zip(channels, nicks, strict=True):
        try:
            kick_one(net, client, name, nick, reason)
        except CommandError as error:
            net._numeric(client, error.numeric, error.params, error.text)


def kick_one(net: Network, client: Client, name: str, nick: str, reason: str) -> None:
    channel = member_channel(net, client, name)
    require_op(client, channel)
    target = net._find_user(nick)
    if target is None:
        raise CommandError("401", [token(nick)], "No such nick/channel")
    if target.conn not in channel.members:
        raise CommandError("441", [target.name, channel.name], "They aren't on that channel")
    line = net._line(client.prefix, "KICK", [channel.name, target.name], reason)
    net._send_to_all(channel.members.values(), line)
    net._leave(target, channel)


def invite(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 2, "INVITE")
    nick, name = params[0], params[1]
    target = net._find_user(nick)
    if target is None:
        raise CommandError("401", [token(nick)], "No such nick/channel")
    channel = member_channel(net, client, name)
    if "i" in channel.modes:
        require_op(client, channel)
    if target.conn in channel.members:
        raise CommandError("443", [target.name, channel.name], "is already on channel")
    folded = ascii_lower(channel.name)
    target.invites.pop(folded, None)
    if len(target.invites) >= CHANLIMIT:
        # Bounded: the oldest invitation is forgotten first.
        del target.invites[next(iter(target.invites))]
    target.invites[folded] = channel
    net._numeric(client, "341", [target.name, channel.name], None)
    if target.away is not None:
        net._numeric(client, "301", [target.name], target.away)
    net._send(target, net._line(client.prefix, "INVITE", [target.name], channel.name))


def topic(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "TOPIC")
    channel = net._find_channel(params[0])
    if len(params) == 1:
        if not net._sees(client, channel):
            raise CommandError("442", [channel.name], "You're not on that channel")
        if channel.topic:
            send_topic(net, client, channel)
        else:
            net._numeric(client, "331", [channel.name], "No topic is set")
        return
    if client.conn not in channel.members:
        raise CommandError("442", [channel.name], "You're not on that channel")
    if "t" in channel.modes:
        require_op(client, channel)
    channel.topic = params[1][:TOPICLEN]
    channel.topic_by = client.prefix
    channel.topic_at = net.wall_time
    line = net._line(client.prefix, "TOPIC", [channel.name], channel.topic)
    net._send_to_all(channel.members.values(), line)


def send_topic(net: Network, client: Client, channel: Channel) -> None:
    net._numeric(client, "332", [channel.name], channel.topic)
    at = str(int(channel.topic_at))
    net._numeric(client, "333", [channel.name, channel.topic_by, at], None)


def names(net: Network, client: Client, params: list[str]) -> None:
    """NAMES #a[,#b]: 353 lines for each channel the client may see, then one 366."""
    if params:
        seen: set[str] = set()
        for name in params[0].split(","):
            channel = net._channels.get(ascii_lower(name))
            if channel is not None and channel.name not in seen and net._sees(client, channel):
                seen.add(channel.name)
                send_names(net, client, channel, end=False)
    net._numeric(client, "366", [token(params[0]) if params else "*"], "End of /NAMES list")


def send_names(net: Network, client: Client, channel: Channel, end: bool = True) -> None:
    """353 lines listing the members, as many as the line limit needs, then (``end``) 366.

    Outsiders (of a channel that is not secret) do not see invisible (+i) users.
    """
    inside = client.conn in channel.members
    shown = [
        channel.prefix_of(conn) + member.name
        for conn, member in channel.members.items()
        if inside or "i" not in member.modes
    ]
    kind = "@" if "s" in channel.modes else "="
    net._numeric_spread(client, "353", [kind, channel.name], shown, None)
    if end:
        net._numeric(client, "366", [channel.name], "End of /NAMES list")
