"""PeerWatch: which peer table changes are news (pure; exact sequences of looks)."""

from __future__ import annotations

from dataclasses import replace

from salut_tui.ui.notifications import DROP_AFTER, NoticeHistory, PeerWatch
from salut_tui.views import Health, PeerView


def peer(health: Health = "ok", *, paired: bool = True, name: str = "beta") -> PeerView:
    return PeerView(
        id="b1", name=name, address="10.0.0.2:7258", version="0.1", paired=paired,
        health=health, last_seen=None, latency_ms=None, vram_total=None, vram_free=None,
        loaded_models=(), available_models=(), requests_in_flight=0, tokens_per_second=0.0,
        mode="cluster", discovered_by=("mdns",),
    )  # fmt: skip


def kinds(watch: PeerWatch, *looks: tuple[PeerView, ...]) -> list[list[str]]:
    return [[n.kind for n in watch.observe(look)] for look in looks]


def test_first_look_is_no_news() -> None:
    assert kinds(PeerWatch(), (peer(),), (peer(),)) == [[], []]


def test_pair_drop_return_unpair() -> None:
    seen = peer("discovered", paired=False)
    looks = [
        (seen,),
        (peer("connecting"),),  # paired, link not up yet
        (peer("ok"),),
        (peer("unreachable"),),  # one late look is not a drop
        (peer("ok"),),
        *[(peer("unreachable"),)] * DROP_AFTER,
        (peer("unreachable"),),  # announced once
        (peer("ok"),),
        (seen,),
    ]
    assert kinds(PeerWatch(), *looks) == [
        [], ["paired"], ["linked"], [], [], *[[]] * (DROP_AFTER - 1), ["dropped"], [],
        ["returned"], ["unpaired"],
    ]  # fmt: skip


def test_a_paired_peer_that_disappears_is_unpaired_and_texts_name_it() -> None:
    watch = PeerWatch()
    watch.observe((peer(),))
    [notice] = watch.observe(())
    assert notice.kind == "unpaired" and "beta" in notice.text and notice.severity == "warning"
    assert watch.observe(()) == []
    [again] = watch.observe((replace(peer(), name="beta-2"),))
    assert again.kind == "paired" and again.text == "Paired with beta-2."


def test_discovered_peers_come_and_go_silently() -> None:
    watch = PeerWatch()
    assert kinds(watch, (), (peer("discovered", paired=False),), ()) == [[], [], []]


def test_history_is_newest_first_and_bounded() -> None:
    history = NoticeHistory()
    for i in range(250):
        history.add("information", f"n{i}")
    assert history.unread == 250
    read = history.read()
    assert len(read) == 200 and read[0].text == "n249" and history.unread == 0
