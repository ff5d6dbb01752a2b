"""Line framing over real sockets: length limit, CR/NUL, UTF-8, packet boundaries, pipelining."""

from __future__ import annotations

from collections.abc import Callable

from irc import IrcClient, unique_nick

Connect = Callable[..., IrcClient]
SERVER = "echochat.local"
MAX_LINE = 512


def pair(connect: Connect) -> tuple[IrcClient, IrcClient]:
    sender, receiver = connect(), connect()
    sender.register(unique_nick("s"))
    receiver.register(unique_nick("r"))
    return sender, receiver


def test_line_exactly_at_the_limit_is_executed_one_byte_over_gets_417(connect: Connect) -> None:
    sender, receiver = pair(connect)
    head = f"PRIVMSG {receiver.nick} :".encode()
    exact = head + b"x" * (MAX_LINE - len(head) - 2) + b"\r\n"
    assert len(exact) == MAX_LINE
    sender.send_raw(exact)
    line = receiver.read_line()
    # Relayed with a longer prefix, the line is cut to the limit, never beyond.
    assert line.startswith(f":{sender.nick}!u@127.0.0.1 PRIVMSG {receiver.nick} :xxx")
    assert len(line.encode()) + 2 == MAX_LINE
    over = head + b"y" * (MAX_LINE - len(head) - 1) + b"\r\n"
    sender.send_raw(over)
    sender.expect(rf":{SERVER} 417 {sender.nick} :Input line was too long")
    sender.sync()
    assert receiver.sync() == []  # Nothing of it was executed...
    sender.send(f"PRIVMSG {receiver.nick} :still here")  # ...and the connection is usable.
    receiver.expect(rf":{sender.nick}!.* PRIVMSG {receiver.nick} :still here")


def test_lf_alone_counts_one_byte(connect: Connect) -> None:
    sender, receiver = pair(connect)
    head = f"PRIVMSG {receiver.nick} :".encode()
    sender.send_raw(head + b"z" * (MAX_LINE - len(head) - 1) + b"\n")
    assert receiver.read_line().startswith(f":{sender.nick}!u@127.0.0.1 PRIVMSG")


def test_long_line_followed_by_a_command_never_runs_the_tail(connect: Connect) -> None:
    sender, receiver = pair(connect)
    # The tail, if ever executed as a line of its own, would message the receiver.
    long_line = b"PRIVMSG nobody :" + b"a" * 4000 + f"PRIVMSG {receiver.nick} :tail".encode()
    long_line += b"b" * (5000 - len(long_line)) + b"\r\n"
    sender.send_raw(long_line + f"PRIVMSG {receiver.nick} :valid\r\n".encode())
    sender.expect(rf":{SERVER} 417 {sender.nick} :Input line was too long")
    receiver.expect(rf":{sender.nick}!.* PRIVMSG {receiver.nick} :valid")
    sender.sync()
    assert receiver.sync() == []


def test_megabyte_without_lf_is_discarded_and_reported_once(connect: Connect) -> None:
    sender, receiver = pair(connect)
    for _ in range(16):
        sender.send_raw(b"x" * 65536)
    sender.send_raw(f"\r\nPRIVMSG {receiver.nick} :after\r\n".encode())
    sender.expect(rf":{SERVER} 417 {sender.nick} :Input line was too long")
    receiver.expect(rf":{sender.nick}!.* PRIVMSG {receiver.nick} :after")
    assert sender.sync() == []


def script(receiver: str) -> bytes:
    lines = [
        f"PRIVMSG {receiver} :héllo wörld ✓ 日本語",
        f"NOTICE {receiver} :ça va? 🙂",
        f"PRIVMSG {receiver} :plain ascii",
    ]
    return "".join(f"{line}\r\n" for line in lines).encode()


def deliveries(receiver: IrcClient) -> list[str]:
    return [line.split(" ", 1)[1] for line in receiver.read_until(r".* :plain ascii")]


def test_whole_bytewise_and_split_inside_utf8_give_the_same_result(connect: Connect) -> None:
    sender, receiver = pair(connect)
    data = script(receiver.nick)
    sender.send_raw(data)
    whole = deliveries(receiver)
    for byte in data:
        sender.send_raw(bytes([byte]))
    bytewise = deliveries(receiver)
    cut = data.index("é".encode()) + 1  # Between the two bytes of é.
    sender.send_raw(data[:cut])  # Two packets (TCP_NODELAY), split inside a character.
    sender.send_raw(data[cut:])
    split = deliveries(receiver)
    assert whole == bytewise == split
    assert whole[0] == f"PRIVMSG {receiver.nick} :héllo wörld ✓ 日本語"
    assert len(whole) == 3


def test_invalid_utf8_is_rejected_and_not_relayed(connect: Connect) -> None:
    sender, receiver = pair(connect)
    sender.send_raw(f"PRIVMSG {receiver.nick} :bad \xff\xfe byte\r\n".encode("latin-1"))
    sender.expect(rf":{SERVER} FAIL PRIVMSG INVALID_UTF8 :Message rejected, invalid UTF-8")
    sender.send_raw(b"privmsg x :\xc3\r\n")  # Truncated sequence, lower-case command.
    sender.expect(rf":{SERVER} FAIL PRIVMSG INVALID_UTF8 :Message rejected, invalid UTF-8")
    sender.sync()
    assert receiver.sync() == []


def test_cr_and_nul_inside_a_line_cannot_inject_a_line(connect: Connect) -> None:
    sender, receiver = pair(connect)
    sender.send_raw(f"PRIVMSG {receiver.nick} :a\rQUIT :x\0b\r\n".encode())
    receiver.expect(rf":{sender.nick}!.* PRIVMSG {receiver.nick} :a QUIT :x b")
    assert sender.sync() == []  # Not quit: still answering.


def test_hundred_pipelined_lines_in_one_packet_are_processed_in_order(connect: Connect) -> None:
    sender, receiver = pair(connect)
    packet = "".join(f"PRIVMSG {receiver.nick} :message {i}\r\n" for i in range(100))
    sender.send_raw(packet.encode() + b"PING :done\r\n")
    sender.expect(rf":{SERVER} PONG {SERVER} :done")
    for i in range(100):
        receiver.expect(rf":{sender.nick}!.* PRIVMSG {receiver.nick} :message {i}")


def test_blank_lines_and_bare_lf_are_ignored(connect: Connect) -> None:
    sender, _ = pair(connect)
    sender.send_raw(b"\r\n\n   \r\n")
    assert sender.sync() == []
