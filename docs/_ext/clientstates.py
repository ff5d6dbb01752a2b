"""A chat client's life, found by driving the real sans-I/O core, and drawn as SVG.

Nothing here lists the states or the transitions by hand. ``explore()`` starts
a ``ChatCore`` with the default ``Limits``, connects one client, and applies
every event of a small alphabet (the lines a client sends, an HTTP request,
the passing of time up to the core's own ``deadline()``, a flood, the peer
closing, the server shutting down, other members filling its SendQ) to every
state it reaches, breadth first, on copies of the server. It names each state from the client's
fields (``registered``, ``negotiating_caps``, ``ping_sent_at``) and each
ending from the farewell of the core's ``Close`` effect. So a change to the
core (a new timer, a renamed reason, a different registration rule) changes
the diagram at the next build; tests/tools/test_client_states.py checks that every
farewell the core can send is reached. The design pages show the result
through the ``client-states`` directive of ``designpages``.

It reads the core's private ``_clients`` to name states: a documentation tool
may look inside; the adapters never do.
"""

from __future__ import annotations

import copy
import html
import itertools
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from echochat.core import ChatCore, Close, Effect, Limits, Send
from echochat.core.commands import HANDLERS, PRE_REGISTRATION
from echochat.core.passwords import PasswordHash, hash_password

HOST = "192.0.2.1"  # TEST-NET-1: an address no real client has.
OTHER_HOST = "192.0.2.2"
CREATED = "at build time"
CHANNEL = "#echochat"
NEW = "new connection"
PEER_CLOSED = "connection lost (no farewell)"


@dataclass
class World:
    """One server, the explored client ``conn``, and the clock."""

    server: ChatCore
    conn: int
    now: float = 0.0


def line(world: World, text: str) -> list[Effect]:
    return world.server.receive_data(world.conn, text.encode() + b"\r\n", world.now)


def time_passes(world: World) -> list[Effect] | None:
    deadline = world.server.deadline(world.conn)
    if deadline is None:
        return None
    world.now = max(world.now, deadline)
    return world.server.handle_timer(world.conn, world.now)


def flood(world: World) -> list[Effect]:
    """More lines in one read than flood control lets through and the RecvQ holds."""
    limits = world.server.limits
    text = "PONG :" + "x" * 64
    count = limits.flood_burst + limits.recvq // (len(text) + 2) + 2
    data = (text.encode() + b"\r\n") * count
    return world.server.receive_data(world.conn, data, world.now)


def others_fill_sendq(world: World) -> list[Effect] | None:
    """Another member talks in the client's channel, and the client never reads.

    Nobody calls ``data_sent`` for the client, as when its socket is full, so
    every line to it stays in its SendQ until the core drops it.
    """
    server = world.server
    client = server._clients.get(world.conn)
    if client is None or not client.registered or not client.channels:
        return None
    other, _ = server.connect(OTHER_HOST, world.now)
    for text in ("NICK talker", "USER talker 0 * :Talker", f"JOIN {CHANNEL}"):
        server.receive_data(other, text.encode() + b"\r\n", world.now)
    message = f"PRIVMSG {CHANNEL} :".encode() + b"x" * (server.limits.max_line - 40) + b"\r\n"
    pace = 1 / server.limits.flood_rate if server.limits.flood_rate else 0.0
    for _ in range(server.limits.sendq // len(message) * 4 + 10):
        world.now += pace
        effects = server.receive_data(other, message, world.now)
        if any(isinstance(e, Close) and e.conn == world.conn for e in effects):
            return effects
        sent = sum(len(e.data) for e in effects if isinstance(e, Send) and e.conn == other)
        server.data_sent(other, sent)
    return []


@dataclass(frozen=True)
class Event:
    label: str
    apply: Callable[[World], list[Effect] | None]
    timer: bool = False
    # A line from the client: where ANY_LINE leads somewhere, the others add nothing.
    line: bool = False


ANY_LINE = "any line, e.g. PONG"
EVENTS = (
    Event("NICK", lambda w: line(w, "NICK alice"), line=True),
    Event("USER", lambda w: line(w, "USER alice 0 * :Alice"), line=True),
    Event("CAP LS", lambda w: line(w, "CAP LS 302"), line=True),
    Event("CAP END", lambda w: line(w, "CAP END"), line=True),
    Event("JOIN", lambda w: line(w, f"JOIN {CHANNEL}"), line=True),
    Event(ANY_LINE, lambda w: line(w, "PONG :echochat.local"), line=True),
    Event("QUIT", lambda w: line(w, "QUIT :bye"), line=True),
    Event("HTTP request line", lambda w: line(w, "GET / HTTP/1.1"), line=True),
    Event("silence", time_passes, timer=True),
    Event("flood", flood),
    Event("others fill its SendQ", others_fill_sendq),
    Event("peer closes", lambda w: w.server.connection_lost(w.conn)),
    Event("server shuts down", lambda w: w.server.shutdown()),
)


def close_reason(farewell: bytes) -> str:
    text = farewell.decode().strip()
    if not text:
        return PEER_CLOSED
    found = re.search(r"\((.*)\)", text)
    return found[1] if found else text.removeprefix("ERROR :")


def state_of(world: World, effects: list[Effect]) -> str:
    for effect in effects:
        if isinstance(effect, Close) and effect.conn == world.conn:
            return "closed: " + close_reason(effect.farewell)
    client = world.server._clients[world.conn]
    if not client.registered:
        return "CAP negotiation" if client.negotiating_caps else "unregistered"
    return "PING sent" if client.ping_sent_at is not None else "registered"


HIDDEN_FIELDS = ("NICK given", "USER given", "in a channel")


def hidden_of(world: World) -> tuple[bool, ...]:
    """What the state's name leaves out, but the next step may depend on."""
    client = world.server._clients[world.conn]
    return (client.nick is not None, client.user is not None, bool(client.channels))


@dataclass
class Edge:
    source: str
    target: str
    labels: list[str] = field(default_factory=list)


@dataclass
class Life:
    """What ``explore()`` found."""

    live: list[str]  # In the order found, the first one reached at connect.
    depth: dict[str, int]
    edges: list[Edge]
    # Endings the same event reaches from every live state: drawn once, not per state.
    everywhere: dict[str, str]
    # event label -> live state -> what it led to ("" for not applicable).
    table: dict[str, dict[str, str]]
    before_registration: list[str]
    commands: list[str]
    limits: Limits


def connect_outcomes() -> list[tuple[str, str]]:
    """(event, state) for a new connection: accepted, or refused by a limit."""
    limits = Limits()
    outcomes = []
    server = ChatCore(limits, CREATED)
    conn, effects = server.connect(HOST, 0.0)
    outcomes.append(("accepted", state_of(World(server, conn), effects)))
    full = ChatCore(Limits(max_clients=1), CREATED)
    full.connect(OTHER_HOST, 0.0)
    conn, effects = full.connect(HOST, 0.0)
    outcomes.append(("max_clients reached", state_of(World(full, conn), effects)))
    if limits.max_per_ip:
        crowded = ChatCore(limits, CREATED)
        for _ in range(limits.max_per_ip):
            crowded.connect(HOST, 0.0)
        conn, effects = crowded.connect(HOST, 0.0)
        label = f"{limits.max_per_ip} already from its address"
        outcomes.append((label, state_of(World(crowded, conn), effects)))
    # With --password-hash, registration checks PASS: a wrong one ends it.
    guarded = ChatCore(
        Limits(password_hash=PasswordHash.parse(hash_password("right", b"a fixed salt, 16+"))),
        CREATED,
    )
    conn, _ = guarded.connect(HOST, 0.0)
    wrong = b"PASS wrong\r\nNICK alice\r\nUSER alice 0 * :Alice\r\n"
    effects = guarded.receive_data(conn, wrong, 0.0)
    outcomes.append(("wrong PASS (--password-hash)", state_of(World(guarded, conn), effects)))
    stopping = ChatCore(limits, CREATED)
    stopping.shutdown()
    conn, effects = stopping.connect(HOST, 0.0)
    outcomes.append(("during shutdown", state_of(World(stopping, conn), effects)))
    return outcomes


def explore() -> Life:
    start = World(ChatCore(Limits(), CREATED), 0)
    start.conn, effects = start.server.connect(HOST, 0.0)
    first = state_of(start, effects)
    live = [first]
    depth = {first: 0}
    # (state, event) -> target -> the hidden fields of the sources that led there.
    found: dict[tuple[str, str], dict[str, set[tuple[bool, ...]]]] = defaultdict(
        lambda: defaultdict(set)
    )
    timer_labels: dict[tuple[str, str], set[str]] = defaultdict(set)
    seen = {(first, hidden_of(start))}
    queue = [start]
    while queue:
        world = queue.pop(0)
        source = state_of(world, [])
        for event in EVENTS:
            after = copy.deepcopy(world)
            result = event.apply(after)
            if result is None:
                continue
            target = state_of(after, result)
            found[source, event.label][target].add(hidden_of(world))
            if event.timer:
                timer_labels[source, target].add(f"silent for {after.now - world.now:g} s")
            if target.startswith("closed: "):
                continue
            if target not in depth:
                depth[target] = depth[source] + 1
                live.append(target)
            key = (target, hidden_of(after))
            if key not in seen:
                seen.add(key)
                queue.append(after)
    return summarise(live, depth, found, timer_labels)


def guard(hidden: set[tuple[bool, ...]]) -> str:
    """The hidden fields true in every source that took this branch."""
    common = [name for i, name in enumerate(HIDDEN_FIELDS) if all(h[i] for h in hidden)]
    return " and ".join(common)


def summarise(
    live: list[str],
    depth: dict[str, int],
    found: dict[tuple[str, str], dict[str, set[tuple[bool, ...]]]],
    timer_labels: dict[tuple[str, str], set[str]],
) -> Life:
    labels: dict[tuple[str, str], list[str]] = defaultdict(list)
    table: dict[str, dict[str, str]] = {event.label: dict.fromkeys(live, "") for event in EVENTS}
    ending_by_event: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for (source, event), targets in found.items():
        # The branch most sources took reads as the rule; the others get their condition.
        usual = max(targets, key=lambda target: (target == source, len(targets[target])))
        cells = []
        for target, hidden in targets.items():
            condition = "" if target == usual else guard(hidden)
            name = event
            if event == "silence":
                name = ", ".join(sorted(timer_labels[source, target]))
            label = f"{name} ({condition})" if condition else name
            cells.append(f"{target} if {condition}" if condition else target)
            if target != source:
                labels[source, target].append(label)
            if target.startswith("closed: "):
                ending_by_event[event].add((source, target))
        table[event][source] = "; ".join(sorted(cells, key=lambda cell: " if " in cell))
    everywhere: dict[str, str] = {}
    for event, pairs in ending_by_event.items():
        ends = {target for _, target in pairs}
        if len(ends) == 1 and {source for source, _ in pairs} == set(live):
            target = ends.pop()
            everywhere[event] = target
            for source in live:
                labels[source, target] = [
                    label for label in labels[source, target] if not label.startswith(event)
                ]
    lines = {event.label for event in EVENTS if event.line}
    for key, text in labels.items():
        if ANY_LINE in text:
            labels[key] = [label for label in text if label == ANY_LINE or label not in lines]
    edges = [
        Edge(source, target, sorted(text)) for (source, target), text in labels.items() if text
    ]
    return Life(
        live=live,
        depth=depth,
        edges=edges,
        everywhere=everywhere,
        table=table,
        before_registration=sorted(PRE_REGISTRATION),
        commands=sorted(HANDLERS),
        limits=Limits(),
    )


# -- Drawing -------------------------------------------------------------------------------
#
# States that can reach each other (a cycle) share a row, left to right in the
# order found; rows go down from connect. Each ending is a red tag on the
# state it ends, above the first row and below the others, so no arrow
# crosses a box; the endings every state shares are listed once underneath.

FONT = 13
CHAR = 7.2  # Average advance of the sans-serif font at FONT px, for sizing boxes.
SMALL = 0.88  # Labels and tags, relative to FONT.
BOX_H = 40
TAG_H = 26
TAG_GAP = 46
ROW_GAP = 100
LINE = 14
MARGIN = 16


@dataclass
class Box:
    name: str
    x: float
    y: float
    w: float
    h: float = BOX_H
    css: str = "state"

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


def text_width(text: str, scale: float = 1.0) -> float:
    return len(text) * CHAR * scale


def rows_of(life: Life) -> list[list[str]]:
    """Live states grouped by mutual reachability, in the order they were found."""
    reach = {state: {state} for state in life.live}
    changed = True
    while changed:
        changed = False
        for edge in life.edges:
            if edge.target in reach and not reach[edge.target] <= reach[edge.source]:
                reach[edge.source] |= reach[edge.target]
                changed = True
    rows: list[list[str]] = []
    for state in life.live:
        for row in rows:
            if state in reach[row[0]] and row[0] in reach[state]:
                row.append(state)
                break
        else:
            rows.append([state])
    return rows


def ending_name(target: str) -> str:
    return target.removeprefix("closed: ")


def svg(life: Life, outcomes: list[tuple[str, str]]) -> str:
    rows = rows_of(life)
    live_edges = [e for e in life.edges if not e.target.startswith("closed: ")]
    # (state, event, ending) for every ending the legend does not cover.
    endings = [
        (edge.source, ", ".join(edge.labels), ending_name(edge.target))
        for edge in life.edges
        if edge.target.startswith("closed: ")
    ]
    accepted = [event for event, target in outcomes if not target.startswith("closed: ")]

    width = max(text_width(name) for name in [NEW, *life.live]) + 32
    in_row = [e for e in live_edges if any({e.source, e.target} <= set(row) for row in rows)]
    gap = max([text_width(label, SMALL) for e in in_row for label in e.labels] + [60]) + 36
    new_gap = max(text_width(label, SMALL) for label in accepted) + 36
    left = MARGIN + width + new_gap
    top = MARGIN + TAG_H + TAG_GAP
    boxes = {NEW: Box(NEW, MARGIN, top, width, css="start")}
    for r, row in enumerate(rows):
        for c, state in enumerate(row):
            boxes[state] = Box(state, left + c * (width + gap), top + r * (BOX_H + ROW_GAP), width)

    parts: list[str] = []
    label_right = 0.0
    tags = place_tags(endings, boxes, rows[0])
    for (state, event, _), tag in zip(endings, tags, strict=True):
        box = boxes[state]
        above = tag.y < box.y
        x1 = min(max(tag.cx, box.x + 14), box.x + box.w - 14)
        y1, y2 = (box.y, tag.y + TAG_H) if above else (box.y + BOX_H, tag.y)
        parts.append(arrow(f"M{x1:.0f},{y1:.0f} L{tag.cx:.0f},{y2:.0f}"))
        parts.append(label([event], (x1 + tag.cx) / 2 + 5, (y1 + y2) / 2, "start"))
        label_right = max(label_right, (x1 + tag.cx) / 2 + 5 + text_width(event, SMALL))

    for event in accepted:
        first = boxes[life.live[0]]
        y = first.cy
        parts.append(arrow(f"M{MARGIN + width:.0f},{y:.0f} L{first.x:.0f},{y:.0f}"))
        parts.append(label([event], (MARGIN + width + first.x) / 2, y - 7, "middle"))
    for edge in live_edges:
        parts.append(draw_edge(boxes[edge.source], boxes[edge.target], edge.labels))
    for box in [*boxes.values(), *tags]:
        parts.append(draw_box(box))

    right = max([box.x + box.w for box in [*boxes.values(), *tags]] + [label_right]) + MARGIN
    bottom = max(box.y + box.h for box in [*boxes.values(), *tags])
    refused = [
        f"{event} → {ending_name(target)}"
        for event, target in outcomes
        if target.startswith("closed: ")
    ]
    everywhere = [f"{event} → {ending_name(target)}" for event, target in life.everywhere.items()]
    # Two lists under the diagram, one after the other.
    lines: list[tuple[str, str]] = [("legend-head", "From every live state:")]
    lines += [("legend", text) for text in everywhere]
    lines += [("legend-head", "A new connection is closed at once if:")]
    lines += [("legend", text) for text in refused]
    y = bottom + 12
    for css, text in lines:
        y += LINE * (2.2 if css == "legend-head" and y > bottom + 12 else 1.3)
        parts.append(f'<text class="{css}" x="{MARGIN}" y="{y:.0f}">{html.escape(text)}</text>')
    height = y + LINE
    right = max(right, MARGIN * 2 + max(text_width(text) for _, text in lines))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="client-states" role="img" '
        f'viewBox="0 0 {right:.0f} {height:.0f}" width="100%" '
        # Scaled to the column, but no smaller than its labels can be read (a phone scrolls).
        f'style="max-width:{right:.0f}px;min-width:{min(right, 620):.0f}px" '
        f'font-family="sans-serif" font-size="{FONT}">'
        "<title>A chat client's states, found by driving the sans-I/O core</title>"
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>'
        "<style>"
        ".client-states .state{fill:#e8f0fe;stroke:#3c6fd1}"
        ".client-states .start{fill:#f1f3f4;stroke:#5f6368}"
        ".client-states .ending{fill:#fdecea;stroke:#c5221f}"
        ".client-states .edge{fill:none;stroke:#444;marker-end:url(#arrow)}"
        f".client-states .label,.client-states .tag{{font-size:{FONT * SMALL:.1f}px}}"
        ".client-states .label{paint-order:stroke;stroke:#fff;stroke-width:4px}"
        ".client-states .legend-head{font-weight:bold}"
        ".client-states text{fill:#111}"
        "</style>" + "".join(parts) + "</svg>"
    )


def place_tags(
    endings: list[tuple[str, str, str]], boxes: dict[str, Box], first_row: list[str]
) -> list[Box]:
    """One tag per ending, near its state, none overlapping another in its band."""
    tags = []
    for state, _, name in endings:
        box = boxes[state]
        above = state == NEW or state in first_row
        y = box.y - TAG_GAP - TAG_H if above else box.y + BOX_H + TAG_GAP
        w = text_width(name, SMALL) + 18
        tags.append(Box(name, box.cx - w / 2, y, w, TAG_H, "ending"))
    for y in {tag.y for tag in tags}:
        band = sorted((tag for tag in tags if tag.y == y), key=lambda tag: tag.cx)
        wanted = sum(tag.cx for tag in band) / len(band)
        for before, after in itertools.pairwise(band):
            after.x = max(after.x, before.x + before.w + 14)
        # Pushing apart moved the band right: centre it again where it was wanted.
        shift = wanted - sum(tag.cx for tag in band) / len(band)
        shift = max(shift, MARGIN - band[0].x)
        for tag in band:
            tag.x += shift
    return tags


def draw_box(box: Box) -> str:
    radius = {"state": 18, "start": 18, "ending": 5}[box.css]
    text_css = "tag" if box.css == "ending" else "name"
    return (
        f'<rect class="{box.css}" x="{box.x:.0f}" y="{box.y:.0f}" width="{box.w:.0f}" '
        f'height="{box.h:.0f}" rx="{radius}"/>'
        f'<text class="{text_css}" x="{box.cx:.0f}" y="{box.cy + 4.5:.0f}" '
        f'text-anchor="middle">{html.escape(box.name)}</text>'
    )


def arrow(path: str) -> str:
    return f'<path class="edge" d="{path}"/>'


def label(texts: list[str], x: float, y: float, anchor: str) -> str:
    """Lines of text whose block is centred on y."""
    first = y - (len(texts) - 1) * LINE / 2
    spans = "".join(
        f'<tspan x="{x:.0f}" dy="{0 if i == 0 else LINE}">{html.escape(text)}</tspan>'
        for i, text in enumerate(texts)
    )
    return (
        f'<text class="label" x="{x:.0f}" y="{first + 4:.0f}" text-anchor="{anchor}">{spans}</text>'
    )


def draw_edge(source: Box, target: Box, texts: list[str]) -> str:
    if source.y == target.y:
        # In one row: rightwards above the middle, leftwards below it.
        rightwards = target.x > source.x
        dy = -8 if rightwards else 8
        x1, x2 = (source.x + source.w, target.x) if rightwards else (source.x, target.x + target.w)
        y = source.cy + dy
        path = f"M{x1:.0f},{y:.0f} L{x2:.0f},{y:.0f}"
        block = (len(texts) - 1) * LINE / 2 + 9
        return arrow(path) + label(
            texts, (x1 + x2) / 2, y + (-block if rightwards else block), "middle"
        )
    downwards = target.y > source.y
    y1, y2 = (source.y + source.h, target.y) if downwards else (source.y, target.y + target.h)
    if source.x == target.x:
        # Down on the left of the centre, up on the right.
        x = source.cx + (-source.w / 5 if downwards else source.w / 5)
        path = f"M{x:.0f},{y1:.0f} L{x:.0f},{y2:.0f}"
        anchor = "end" if downwards else "start"
        return arrow(path) + label(texts, x + (-6 if downwards else 6), (y1 + y2) / 2, anchor)
    x1, x2 = source.cx, target.cx
    path = f"M{x1:.0f},{y1:.0f} L{x2:.0f},{y2:.0f}"
    return arrow(path) + label(texts, (x1 + x2) / 2, (y1 + y2) / 2, "middle")
