"""Finding other nodes: zeroconf (mDNS/DNS-SD) on the shared asyncio loop, and addresses listed
in the config, polled for networks that block multicast. Both report the same two callbacks,
so a listed peer behaves exactly like a discovered one.

Nothing here is authenticated: what they report is a *candidate* address and a name to show
until pairing, never trust (see `Cluster._seen`). Names are cleaned here, where they enter, and
a listed address's answer is read up to `MAX_HELLO` bytes only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import aiohttp
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from salut_tui.pairing.names import clean_name

log = logging.getLogger(__name__)

SERVICE_TYPE = "_salut._tcp.local."
HELLO_PATH = "/salut/hello"
RECORD_TTL = 30  # seconds; a node that vanishes without a goodbye drops out after this
MANUAL_POLL = 2.0
MAX_HELLO = 4096  # bytes of a listed address's /salut/hello answer that are read

Seen = Callable[[str, str, str, str, str], None]  # node_id, name, address, version, source
Gone = Callable[[str, str], None]  # node_id, source


def advertised_addresses(host: str) -> list[str]:
    """The IPv4 addresses to announce: the bound one, or every non-loopback one for 0.0.0.0."""
    if host not in ("", "0.0.0.0", "::"):
        return [host]
    from zeroconf import get_all_addresses

    found = [a for a in get_all_addresses() if not a.startswith("127.")]
    return found or ["127.0.0.1"]


class MdnsDiscovery:
    def __init__(
        self,
        *,
        node_id: str,
        name: str,
        version: str,
        host: str,
        port: int,
        on_seen: Seen,
        on_gone: Gone,
    ) -> None:
        self.node_id, self.name, self.version = node_id, name, version
        self.host, self.port = host, port
        self._on_seen, self._on_gone = on_seen, on_gone
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._names: dict[str, str] = {}  # service name -> node id
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        addresses = advertised_addresses(self.host)
        interfaces = InterfaceChoice.All if self.host in ("", "0.0.0.0", "::") else addresses
        self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        label = (
            f"{self.name[:30].replace('.', ' ')}-{self.node_id}"  # a dot would split the DNS name
        )
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            port=self.port,
            properties={
                "id": self.node_id,
                "name": self.name,
                "version": self.version,
                "port": str(self.port),
            },
            server=f"salut-{self.node_id.replace('-', '')}.local.",
            parsed_addresses=addresses,
            host_ttl=RECORD_TTL,
            other_ttl=RECORD_TTL,
        )
        await self._zc.async_register_service(info, cooperating_responders=True)
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change]
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            with contextlib.suppress(Exception):
                await (
                    self._zc.async_unregister_all_services()
                )  # the goodbye makes peers drop us now
            await self._zc.async_close()

    def _on_change(
        self, zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            node_id = self._names.pop(name, None)
            if node_id is not None:
                self._on_gone(node_id, "mdns")
            return
        task = asyncio.get_running_loop().create_task(self._resolve(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(self._zc.zeroconf, 2000):
            return
        props = {
            k.decode(errors="replace"): (v or b"").decode(errors="replace")
            for k, v in info.properties.items()
        }
        node_id = clean_name(props.get("id", ""))
        addresses = info.parsed_addresses(IPVersion.V4Only)
        try:
            port = int(props.get("port") or info.port or 0)
        except ValueError:
            return
        if not node_id or node_id == self.node_id or not addresses or not 0 < port < 65536:
            return
        self._names[name] = node_id
        self._on_seen(
            node_id,
            clean_name(props.get("name", "")),
            f"{addresses[0]}:{port}",
            clean_name(props.get("version", ""), 32),
            "mdns",
        )


class ManualPeers:
    """Polls `GET /salut/hello` on each configured address: the same facts mDNS would give."""

    def __init__(
        self,
        addresses: list[str],
        session: aiohttp.ClientSession,
        *,
        own_id: str,
        on_seen: Seen,
        on_gone: Gone,
    ) -> None:
        self.addresses = addresses
        self._session = session
        self._own_id = own_id
        self._on_seen, self._on_gone = on_seen, on_gone
        self._known: dict[str, str] = {}  # address -> node id

    async def run(self) -> None:
        while True:
            await asyncio.gather(*(self._poll(a) for a in self.addresses))
            await asyncio.sleep(MANUAL_POLL)

    async def _poll(self, address: str) -> None:
        try:
            async with self._session.get(
                f"http://{address}{HELLO_PATH}", timeout=aiohttp.ClientTimeout(total=1.5)
            ) as resp:
                body = json.loads(await _read_bounded(resp, MAX_HELLO) or b"null")
            node_id = clean_name(body["id"])
            if resp.status != 200 or not node_id:
                raise ValueError(f"no node at {address}")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError, TypeError):
            node_id = self._known.pop(address, "")
            if node_id:
                self._on_gone(node_id, "manual")
            return
        if node_id == self._own_id:
            return
        self._known[address] = node_id
        self._on_seen(
            node_id,
            clean_name(body.get("name", "")),
            address,
            clean_name(body.get("version", ""), 32),
            "manual",
        )


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or ValueError once it passes `limit` bytes (nothing more is read)."""
    data = bytearray()
    while len(data) <= limit:
        piece = await resp.content.read(limit + 1 - len(data))
        if not piece:
            return bytes(data)
        data += piece
    raise ValueError(f"answer over {limit} bytes")
