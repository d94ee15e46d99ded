"""Random packet loss on a network device, in the kernel: an nftables rule, written over netlink.

The netns backend (hw/netns.py) drops a link's packets where they arrive: a chain on the netdev family's
``ingress`` hook of the receiving veth end, with one rule -- ``meta protocol != arp meta random < p x 2^32
drop``: 32 random bits per packet (``NFT_META_PRANDOM``), compared as bytes with the threshold in network byte
order (uniform bytes in any order: the drop probability is the threshold over 2^32). Every frame but ARP that
crosses the link in that direction is dropped with probability ``p``, independently; TCP sees real losses and
recovers as it does (fast retransmit, RTO). ARP is spared because the model has no address resolution: a
kernel gives a neighbour up after three unanswered requests, so at 5 % loss on a two-link path (a request and
its reply cross four lossy directions) one resolution in ~160 failed, and its connection with "No route to
host" (CI, 2026-12-03) -- an outcome the model cannot have. The rule is written with pyroute2 (netlink),
because this machine has neither netem nor the ``nft`` tool, while its kernel has nf_tables with the netdev
family. Netlink is per namespace: ``drop_at_random`` runs inside the namespace (``hw.netns.inside``).
"""

from __future__ import annotations

import struct

from hw.netns import NetnsUnavailable, inside

TABLE = "pqtwin_loss"
NF_NETDEV_INGRESS = 0  # the netdev family's hooks: ingress 0, egress 1
NFT_META_PROTOCOL = 1  # include/uapi/linux/netfilter/nf_tables.h, enum nft_meta_keys
NFT_META_PRANDOM = 24
ETH_P_ARP = b"\x08\x06"  # the frame's EtherType (skb->protocol), network byte order
NF_DROP = 0


def threshold(probability: float) -> int:
    """The 32-bit value that random bits fall below with ``probability`` (0 <= p < 1)."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"loss probability must be in [0, 1) (got {probability!r})")
    return min(round(probability * 2**32), 2**32 - 1)


def drop_at_random(ns: str, device: str, probability: float) -> None:
    """Drop each frame arriving on ``device`` in namespace ``ns`` with ``probability`` (one chain per device)."""
    from pyroute2.netlink.nfnetlink.nftsocket import NFPROTO_NETDEV, NFT_MSG_NEWCHAIN, Cmp, Regs, nft_chain_msg
    from pyroute2.nftables.expressions import genex, verdict
    from pyroute2.nftables.main import NFTables

    below = struct.pack(">I", threshold(probability))
    hook = {"attrs": [["NFTA_HOOK_HOOKNUM", NF_NETDEV_INGRESS], ["NFTA_HOOK_PRIORITY", 0], ["NFTA_HOOK_DEV", device]]}
    proto = genex("meta", {"key": NFT_META_PROTOCOL, "dreg": Regs.NFT_REG_1})
    not_arp = genex(
        "cmp", {"sreg": Regs.NFT_REG_1, "op": Cmp.NFT_CMP_NEQ, "data": {"attrs": [("NFTA_DATA_VALUE", ETH_P_ARP)]}}
    )
    rand = genex("meta", {"key": NFT_META_PRANDOM, "dreg": Regs.NFT_REG_1})
    cmp = genex("cmp", {"sreg": Regs.NFT_REG_1, "op": Cmp.NFT_CMP_LT, "data": {"attrs": [("NFTA_DATA_VALUE", below)]}})
    with inside(ns):
        try:
            nft = NFTables(nfgen_family=NFPROTO_NETDEV)
            try:
                nft.table("add", name=TABLE)  # adding an existing table is not an error
                # pyroute2's chain() knows the inet hooks only; the netdev ingress hook goes through its command
                chain = {"table": TABLE, "name": device, "hook": hook, "type": "filter"}
                core = nft.asyncore
                core.event_loop.run_until_complete(
                    core._command(nft_chain_msg, {"add": NFT_MSG_NEWCHAIN}, "add", chain)
                )
                rule = ([proto], [not_arp], [rand], [cmp], verdict(code=NF_DROP))
                nft.rule("add", table=TABLE, chain=device, expressions=rule)
            finally:
                nft.close()
        except OSError as exc:  # a kernel without nf_tables' netdev family, or no CAP_NET_ADMIN
            raise NetnsUnavailable(f"cannot drop packets on {device} in {ns}: {exc}") from None
