"""Commands that only answer: who is here and what this server is.

ISUPPORT (005), LUSERS, MOTD, VERSION, TIME, INFO, LIST, WHO, WHOIS, WHOWAS,
ISON and USERHOST. None of them changes a table.
"""

from __future__ import annotations

from datetime import UTC, datetime

from echochat.core.errors import CommandError
from echochat.core.limits import (
    AWAYLEN,
    CHANLIMIT,
    CHANNELLEN,
    KEYLEN,
    KICKLEN,
    MAXBANS,
    MODES,
    NICKLEN,
    TOPICLEN,
    USERLEN,
)
from echochat.core.message import ascii_lower, token
from echochat.core.network import Network
from echochat.core.state import Channel, Client, chanmodes_token, compile_mask, prefix_token
from echochat.core.version import __version__

# Commands that take comma-separated targets, and how many (empty: no limit).
TARGMAX = "JOIN:,PART:,KICK:,LIST:,NAMES:,PRIVMSG:,NOTICE:,WHOIS:1"
USERHOST_MAX = 5


def isupport_tokens(net: Network) -> list[str]:
    """What 005 advertises; every token is something the core enforces."""
    return [
        f"AWAYLEN={AWAYLEN}",
        "CASEMAPPING=ascii",
        f"CHANLIMIT=#:{CHANLIMIT}",
        f"CHANMODES={chanmodes_token()}",
        f"CHANNELLEN={CHANNELLEN}",
        "CHANTYPES=#",
        f"KEYLEN={KEYLEN}",
        f"KICKLEN={KICKLEN}",
        f"MAXLIST=b:{MAXBANS}",
        f"MODES={MODES}",
        "NETWORK=echochat",
        f"NICKLEN={NICKLEN}",
        f"PREFIX={prefix_token()}",
        "STATUSMSG=@+",
        f"TARGMAX={TARGMAX}",
        f"TOPICLEN={TOPICLEN}",
        f"USERLEN={USERLEN}",
        "UTF8ONLY",
    ]


def send_isupport(net: Network, client: Client) -> None:
    # At most 13 tokens a line (Modern IRC), and within max_line.
    tokens = isupport_tokens(net)
    for start in range(0, len(tokens), 13):
        batch = tokens[start : start + 13]
        net._numeric_spread(client, "005", [], batch, "are supported by this server")


def send_lusers(net: Network, client: Client) -> None:
    """How many users, operators, unregistered connections and channels (RFC 2812 3.4.2)."""
    users = [other for other in net._clients.values() if other.registered]
    invisible = sum(1 for other in users if "i" in other.modes)
    opers = sum(1 for other in users if other.is_oper)
    unknown = len(net._clients) - len(users)
    visible = len(users) - invisible
    net._numeric(
        client, "251", [], f"There are {visible} users and {invisible} invisible on 1 servers"
    )
    if opers:
        net._numeric(client, "252", [str(opers)], "operator(s) online")
    if unknown:
        net._numeric(client, "253", [str(unknown)], "unknown connection(s)")
    net._numeric(client, "254", [str(len(net._channels))], "channels formed")
    net._numeric(client, "255", [], f"I have {len(users)} clients and 0 servers")
    count, most = str(len(users)), str(net.most_users)
    net._numeric(client, "265", [count, most], f"Current local users {count}, max {most}")
    net._numeric(client, "266", [count, most], f"Current global users {count}, max {most}")


def send_motd(net: Network, client: Client) -> None:
    motd = net.limits.motd
    if motd is None:
        net._numeric(client, "422", [], "MOTD File is missing")
        return
    net._numeric(client, "375", [], f"- {net.limits.server_name} Message of the day - ")
    for text in motd:
        net._numeric(client, "372", [], f"- {text}")
    net._numeric(client, "376", [], "End of /MOTD command.")


def lusers(net: Network, client: Client, params: list[str]) -> None:
    send_lusers(net, client)


def motd(net: Network, client: Client, params: list[str]) -> None:
    send_motd(net, client)


def version(net: Network, client: Client, params: list[str]) -> None:
    server = net.limits.server_name
    net._numeric(client, "351", [f"echochat-{__version__}.", server], "sans-I/O core")
    send_isupport(net, client)


def time(net: Network, client: Client, params: list[str]) -> None:
    now = datetime.fromtimestamp(net.wall_time, UTC)
    server = net.limits.server_name
    net._numeric(client, "391", [server], now.strftime("%A %B %d %Y -- %H:%M:%S +00:00"))


def info(net: Network, client: Client, params: list[str]) -> None:
    for text in (
        f"echochat {__version__}: one IRC server on asyncio, trio and anyio,",
        "all sharing one sans-I/O core.",
        f"Up since {net.created}.",
    ):
        net._numeric(client, "371", [], text)
    net._numeric(client, "374", [], "End of INFO list")


def list_(net: Network, client: Client, params: list[str]) -> None:
    if params and params[0]:
        names = {ascii_lower(name) for name in params[0].split(",")}
        channels = [net._channels[name] for name in names if name in net._channels]
    else:
        channels = list(net._channels.values())
    net._numeric(client, "321", ["Channel"], "Users  Name")
    for channel in channels:
        if net._sees(client, channel):
            net._numeric(client, "322", [channel.name, str(len(channel.members))], channel.topic)
    net._numeric(client, "323", [], "End of /LIST")


def _shares_a_channel(client: Client, other: Client) -> bool:
    return any(other.conn in channel.members for channel in client.channels.values())


def _flags(user: Client, channel: Channel | None) -> str:
    """WHO's flags: H here or G gone (away), * an IRC operator, then @ or + on the channel."""
    flags = "G" if user.away is not None else "H"
    if user.is_oper:
        flags += "*"
    return flags + (channel.prefix_of(user.conn) if channel is not None else "")


def who(net: Network, client: Client, params: list[str]) -> None:
    mask = params[0] if params and params[0] else "*"
    opers_only = len(params) > 1 and params[1] == "o"
    channel = net._channels.get(ascii_lower(mask)) if mask.startswith("#") else None
    found: list[Client]
    if channel is not None:
        found = list(channel.members.values()) if net._sees(client, channel) else []
    elif mask.startswith("#"):
        found = []
    elif "*" not in mask and "?" not in mask and (user := net._find_user(mask)) is not None:
        found = [user]  # A nick asked for by name is found even if invisible.
    else:
        pattern = compile_mask(mask)
        found = [
            user
            for user in net._clients.values()
            if user.registered
            # +i hides a user from masks, except from those sharing a channel.
            and ("i" not in user.modes or user is client or _shares_a_channel(client, user))
            and any(
                pattern.fullmatch(ascii_lower(text))
                for text in (str(user.nick), str(user.user), user.host, user.realname)
            )
        ]
    for user in found:
        if opers_only and not user.is_oper:
            continue
        where = channel.name if channel is not None else "*"
        server = user.origin or net.limits.server_name
        fields = [where, str(user.user), user.host, server, user.name, _flags(user, channel)]
        net._numeric(client, "352", fields, f"0 {user.realname}")
    net._numeric(client, "315", [token(mask)], "End of WHO list")


def whois(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "WHOIS")
    nick = params[-1].split(",")[0]  # WHOIS [<server>] <nick>
    user = net._find_user(nick)
    if user is None:
        net._numeric(client, "401", [token(nick)], "No such nick/channel")
        net._numeric(client, "318", [token(nick)], "End of /WHOIS list")
        return
    name = user.name
    net._numeric(client, "311", [name, str(user.user), user.host, "*"], user.realname)
    channels = [
        channel.prefix_of(user.conn) + channel.name
        for channel in user.channels.values()
        if net._sees(client, channel)
    ]
    net._numeric_spread(client, "319", [name], channels, None)
    net._numeric(client, "312", [name, user.origin or net.limits.server_name], "echochat")
    if user.away is not None:
        net._numeric(client, "301", [name], user.away)
    if user.is_oper:
        net._numeric(client, "313", [name], "is an IRC operator")
    idle = max(0, int(net.now - user.spoke_at))
    signon = str(int(user.signon_at))
    net._numeric(client, "317", [name, str(idle), signon], "seconds idle, signon time")
    net._numeric(client, "318", [name], "End of /WHOIS list")


def whowas(net: Network, client: Client, params: list[str]) -> None:
    if not params or not params[0]:
        raise CommandError("431", [], "No nickname given")
    nick = params[0].split(",")[0]
    wanted = int(params[1]) if len(params) > 1 and params[1].isdigit() else 0
    folded = ascii_lower(nick)
    found = [past for past in reversed(net.whowas) if ascii_lower(past.nick) == folded]
    if wanted > 0:
        found = found[:wanted]
    if not found:
        net._numeric(client, "406", [token(nick)], "There was no such nickname")
    server = net.limits.server_name
    for past in found:
        net._numeric(client, "314", [past.nick, past.user, past.host, "*"], past.realname)
        when = datetime.fromtimestamp(past.left_at, UTC).strftime("%a %b %d %H:%M:%S %Y")
        net._numeric(client, "312", [past.nick, server], when)
    net._numeric(client, "369", [token(nick)], "End of WHOWAS")


def ison(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "ISON")
    online = [
        str(user.nick)
        for word in " ".join(params).split()
        if (user := net._find_user(word)) is not None
    ]
    net._numeric(client, "303", [], " ".join(online))


def userhost(net: Network, client: Client, params: list[str]) -> None:
    net._need(params, 1, "USERHOST")
    replies = []
    for word in " ".join(params).split()[:USERHOST_MAX]:
        user = net._find_user(word)
        if user is not None:
            oper = "*" if user.is_oper else ""
            here = "-" if user.away is not None else "+"
            replies.append(f"{user.nick}{oper}={here}{user.user}@{user.host}")
    net._numeric(client, "302", [], " ".join(replies))
