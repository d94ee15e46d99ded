"""Scenario edits the app offers beyond ``--set`` overrides; the edited dict is then loaded with
``sim.scenario.load_scenario_data`` (the original file stays the scenario's path, so profiles resolve).

Structural edits (lists change length, which ``--set`` cannot express):

- ``set_nodes(data, n)``: n hosts in the scenario's layout. The aggregator stays on its host; one FL client
  per other host (and on the aggregator's host too when the scenario puts one there, e.g. ward-200); one
  crypto worker per host when the scenario has workers. New hosts copy the last host (cores, profile) and
  its link; device populations whose client or gateway host is gone move to the remaining clients.
- ``set_device_counts(data, {class: total})``: the total per device class, split evenly over the scenario's
  populations of that class; a class the scenario lacks gets a new population next to the first one.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from sim.errors import UserError, load_yaml
from sim.scenario import apply_override


def build_data(
    path: Path,
    overrides: tuple[str, ...] = (),
    nodes: int | None = None,
    devices: tuple[tuple[str, int], ...] = (),
) -> dict[str, Any]:
    """The scenario file's dict with structural edits, then ``--set`` overrides, applied."""
    data = load_yaml(path)
    try:
        if nodes is not None:
            set_nodes(data, nodes)
        if devices:
            set_device_counts(data, dict(devices))
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise UserError(f"{path}: cannot apply the app's edits to this scenario ({exc!r})") from None
    for item in overrides:
        apply_override(data, item)
    return data


def _host_prefix(name: str) -> str:
    stem = re.sub(r"\d+$", "", name)
    return stem if stem != name else f"{name}-"


def _new_hosts(template: dict[str, Any], count: int, taken: set[str]) -> list[dict[str, Any]]:
    """``count`` copies of the template host under the first free names of its prefix (pi-4, pi-5, ...)."""
    out: list[dict[str, Any]] = []
    prefix, i = _host_prefix(template["name"]), 1
    while len(out) < count:
        name = f"{prefix}{i}"
        if name not in taken:
            out.append({**copy.deepcopy(template), "name": name})
            taken.add(name)
        i += 1
    return out


def set_nodes(data: dict[str, Any], n: int) -> None:
    """Resize the deployment to n hosts (see the module docstring)."""
    dep = data["deployment"]
    hosts: list[dict[str, Any]] = dep["hosts"]
    if n < 1:
        raise UserError(f"number of nodes must be at least 1 (got {n})")
    if n == len(hosts):
        return
    pods: list[dict[str, Any]] = dep["pods"]
    aggs = [p for p in pods if p.get("role") == "aggregator"]
    if len(aggs) != 1:
        raise UserError("changing the number of nodes needs exactly one aggregator pod")
    agg = aggs[0]
    ordered = [h for h in hosts if h["name"] == agg["host"]] + [h for h in hosts if h["name"] != agg["host"]]
    template = ordered[-1]
    network = dep.setdefault("network", {})
    net_nodes: list[dict[str, Any]] = network.setdefault("nodes", [])
    links: list[dict[str, Any]] = network.setdefault("links", [])
    taken = {h["name"] for h in hosts} | {x["name"] for x in net_nodes} | {p["name"] for p in pods}
    kept = ordered[:n] + _new_hosts(template, n - len(ordered[:n]), taken)
    names = [h["name"] for h in kept]
    old_names = {h["name"] for h in hosts}
    # links: keep those between surviving hosts/nodes; new hosts copy the template host's first link
    links[:] = [lk for lk in links if all(lk[e] in names or lk[e] not in old_names for e in ("a", "b"))]
    linked = {e for lk in links for e in (lk["a"], lk["b"])}
    unlinked = [name for name in names if name not in linked] if n > 1 else []
    if unlinked:
        last = ordered[min(n, len(ordered)) - 1]["name"]  # a surviving host whose link new hosts copy
        tpl_link = next((lk for lk in links if last in (lk["a"], lk["b"])), None)
        if tpl_link is None:
            if not net_nodes:
                net_nodes.append({"name": "switch", "kind": "switch"})
            tpl_link = {"a": last, "b": net_nodes[0]["name"], "preset": "gigabit-ethernet"}
        far = tpl_link["b"] if tpl_link["a"] == last else tpl_link["a"]
        links += [{**copy.deepcopy(tpl_link), "a": name, "b": far} for name in unlinked]
    dep["hosts"] = kept
    # pods: aggregator unchanged; clients and workers re-laid out over the hosts
    clients_before = [p for p in pods if p.get("role") == "client"]
    on_agg = any(p["host"] == agg["host"] for p in clients_before)
    client_hosts = names if on_agg else names[1:]
    if n == 1:  # everything on one host: keep the number of clients
        client_hosts = [names[0]] * max(1, len(clients_before))
    clients = [{"name": f"client-{i + 1}", "role": "client", "host": h} for i, h in enumerate(client_hosts)]
    workers = []
    if any(p.get("role") == "worker" for p in pods):
        workers = [{"name": f"worker-{i + 1}", "role": "worker", "host": h} for i, h in enumerate(names)]
    dep["pods"] = [agg, *clients, *workers]
    data["workload"]["fl"]["clients"] = len(clients)
    host_of = {p["name"]: p["host"] for p in dep["pods"]}
    for j, pop in enumerate(data["workload"].get("devices") or []):
        if pop.get("report_to") not in host_of:
            pop["report_to"] = clients[j % len(clients)]["name"]
        if pop.get("gateway") in old_names and pop["gateway"] not in names:
            pop["gateway"] = host_of[pop["report_to"]]


def device_totals(data: dict[str, Any]) -> dict[str, int]:
    """Devices per class in a scenario dict."""
    out: dict[str, int] = {}
    for pop in data["workload"].get("devices") or []:
        out[pop["class"]] = out.get(pop["class"], 0) + int(pop.get("count", 0))
    return out


def set_device_counts(data: dict[str, Any], totals: dict[str, int]) -> None:
    """Set the total number of devices of each given class (see the module docstring)."""
    pops: list[dict[str, Any]] = data["workload"].setdefault("devices", [])
    for cls, total in totals.items():
        if total < 0:
            raise UserError(f"device count for {cls} must be >= 0 (got {total})")
        mine = [p for p in pops if p["class"] == cls]
        if not mine:
            if total == 0:
                continue
            names = {p["name"] for p in pops}
            name = next(f"{cls}-{i}" for i in range(1, 1000) if f"{cls}-{i}" not in names)
            if pops:
                where = {"gateway": pops[0]["gateway"], "report_to": pops[0]["report_to"]}
            else:
                client = next(p for p in data["deployment"]["pods"] if p["role"] == "client")
                where = {"gateway": client["host"], "report_to": client["name"]}
            pops.append({"name": name, "class": cls, "count": total, **where})
            continue
        base, extra = divmod(total, len(mine))
        for i, pop in enumerate(mine):
            pop["count"] = base + (1 if i < extra else 0)
