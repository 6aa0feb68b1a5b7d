"""The Engine API's JSON both ways: a sandbox's container config out, typed records in.

Rules:
- Plain functions of plain values: no engine calls and no I/O here (`_docker` and
  `_docker_images` make the calls), so each translation is tested as a plain call.
- Records are read from containers and images anyone may have made: a missing or garbled
  field gives a default (and never an exception), so one odd container cannot stop a listing.
- Engine times (RFC 3339 text, or unix seconds in listings) become unix seconds; the engine's
  zero time is 0.0.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rock_core import ProtocolError
from rock_core.protocol import SandboxInfo, SandboxSpec

from ._build_log import BuildLog
from ._labels import (
    LABEL_OWNER,
    LABEL_SANDBOX,
    created_at,
    owner_uid,
    spec_from_labels,
)
from ._runtime import (
    ContainerDetail,
    ContainerSummary,
    DiskUsage,
    EngineEvent,
    EventAction,
    ImageRecord,
    StatsReading,
)

# What a normal shell needs; Docker's default set minus MKNOD, NET_RAW, SETFCAP, SETPCAP.
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "AUDIT_WRITE",
]
KEEPALIVE = ["sleep", "2147483647"]

# ---------------------------------------------------------------------------- out


def engine_host_config(spec: SandboxSpec) -> dict[str, Any]:
    """The Engine API `HostConfig` of a sandbox: its limits and its safe defaults."""
    host_config: dict[str, Any] = {
        "Init": True,
        "NanoCpus": int(spec.cpus * 1e9),
        "Memory": spec.memory,
        "MemorySwap": spec.memory,
        "PidsLimit": spec.pids,
        "Privileged": False,
        "CapDrop": ["ALL"],
        "CapAdd": CAPABILITIES,
        "SecurityOpt": ["no-new-privileges"],
        "NetworkMode": "bridge" if spec.network else "none",
    }
    if spec.disk:
        host_config["StorageOpt"] = {"size": spec.disk}
    return host_config


def container_config(sandbox_id: str, spec: SandboxSpec, labels: dict[str, str]) -> dict[str, Any]:
    """The Engine API create body of a sandbox's container (labels as given)."""
    config: dict[str, Any] = {
        "Image": spec.image,
        "Entrypoint": KEEPALIVE,
        "Cmd": [],
        "Labels": labels,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "HostConfig": engine_host_config(spec),
        "Hostname": sandbox_id[:63],
    }
    if spec.workdir:
        config["WorkingDir"] = spec.workdir
    if spec.user:
        config["User"] = spec.user
    return config


def commit_config(container: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The config a committed image starts from (the engine merges the container's into it).

    `container` is the container's inspect record, `source` the `Config` of its image. The
    source image's entrypoint and command come back (the sandbox ran a keep-alive instead),
    and every ``rock.*`` label the container carried is blanked.
    """
    labels = dict(source.get("Labels") or {})
    for key in [*((container.get("Config") or {}).get("Labels") or {}), *labels]:
        if key.startswith("rock."):
            labels[key] = ""
    return {
        "Labels": labels,
        # An empty list, not null: the engine would otherwise take the container's keep-alive.
        "Entrypoint": list(source.get("Entrypoint") or []),
        "Cmd": list(source.get("Cmd") or []),
        "Env": list(source.get("Env") or []),
        "WorkingDir": source.get("WorkingDir") or "",
        "User": source.get("User") or "",
    }


# ---------------------------------------------------------------------------- in


def engine_time(text: object) -> float:
    """Unix time from the engine's RFC 3339 timestamps; 0.0 for its zero time or garbage."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str_dict(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _int(value: object) -> int:
    if isinstance(value, int | float | str):
        try:
            return int(value)
        except (ValueError, OverflowError):
            return 0
    return 0


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def labels_of(attrs: dict[str, Any]) -> dict[str, str]:
    """A container's labels: from its inspect record (`Config`) or a listing's summary."""
    config = attrs.get("Config")
    labels = (config.get("Labels") if isinstance(config, dict) else None) or attrs.get("Labels")
    return _str_dict(labels)


def sandbox_info(attrs: dict[str, Any], default_uid: int) -> SandboxInfo:
    """A sandbox as the engine describes its container: a full inspect record or a summary
    from a listing (where `State` is a word and the image and labels sit at the top)."""
    labels = labels_of(attrs)
    config = _dict(attrs.get("Config"))
    state = attrs.get("State")
    exit_code = None
    if isinstance(state, dict):
        status = str(state.get("Status", "unknown"))
        code = state.get("ExitCode")
        exit_code = code if isinstance(code, int) and status == "exited" else None
    else:
        status = str(state or "unknown")
    return SandboxInfo(
        sandbox_id=labels.get(LABEL_SANDBOX, ""),
        container_id=str(attrs.get("Id", "")),
        image=str(config.get("Image", "") or attrs.get("Image", "")),
        state=status,
        owner=labels.get(LABEL_OWNER, ""),
        created_at=created_at(labels),
        labels=labels,
        exit_code=exit_code,
        spec=spec_from_labels(labels),
        owner_uid=owner_uid(labels, default_uid),
    )


def container_detail(attrs: dict[str, Any]) -> ContainerDetail:
    """A container's inspect record, typed."""
    labels = labels_of(attrs)
    config, state = _dict(attrs.get("Config")), _dict(attrs.get("State"))
    code = state.get("ExitCode")
    network = _dict(attrs.get("NetworkSettings"))
    address = str(network.get("IPAddress") or "")
    if not address:
        for settings in _dict(network.get("Networks")).values():
            address = str(_dict(settings).get("IPAddress") or "")
            if address:
                break
    return ContainerDetail(
        sandbox_id=labels.get(LABEL_SANDBOX, ""),
        container_id=str(attrs.get("Id", "")),
        image=str(config.get("Image", "") or ""),
        image_id=str(attrs.get("Image", "") or ""),
        status=str(state.get("Status", "unknown")),
        running=bool(state.get("Running")),
        pid=_int(state.get("Pid")),
        started_at=engine_time(state.get("StartedAt")),
        finished_at=engine_time(state.get("FinishedAt")),
        exit_code=code if isinstance(code, int) and not state.get("Running") else None,
        oom_killed=bool(state.get("OOMKilled")),
        ip_address=address,
        labels=labels,
    )


def container_summary(attrs: dict[str, Any]) -> ContainerSummary:
    """A container of a listing (any owner), as much as image use needs."""
    return ContainerSummary(
        image_id=str(attrs.get("ImageID") or ""),
        running=attrs.get("State") in ("running", "paused"),  # paused: frozen, still running
        created=_float(attrs.get("Created")),
    )


def _tags(raw: object) -> list[str]:
    return [str(tag) for tag in raw if tag] if isinstance(raw, list) else []


def image_record(raw: dict[str, Any]) -> ImageRecord:
    """An image of the disk-usage report (times are unix seconds there)."""
    return ImageRecord(
        image_id=str(raw.get("Id", "")),
        tags=_tags(raw.get("RepoTags")),
        size=_int(raw.get("Size")),
        shared_size=max(0, _int(raw.get("SharedSize"))),
        created=_float(raw.get("Created")),
        containers=max(0, _int(raw.get("Containers"))),
        labels=_str_dict(raw.get("Labels")),
    )


def inspected_image(raw: dict[str, Any]) -> ImageRecord:
    """An image's inspect record (its labels are in `Config`, its time is RFC 3339)."""
    return ImageRecord(
        image_id=str(raw.get("Id", "")),
        tags=_tags(raw.get("RepoTags")),
        size=_int(raw.get("Size")),
        created=engine_time(raw.get("Created")),
        labels=_str_dict(_dict(raw.get("Config")).get("Labels")),
    )


def disk_usage(report: dict[str, Any]) -> DiskUsage:
    """The engine's `system/df` report, typed."""
    images = report.get("Images")
    return DiskUsage(
        images=[image_record(raw) for raw in images or [] if isinstance(raw, dict)],
        layers_size=_int(report.get("LayersSize")),
    )


def stats_reading(reading: dict[str, Any]) -> StatsReading:
    """One stats reading of the engine (cgroup v1 or v2), typed."""
    cpu = _dict(reading.get("cpu_stats"))
    pre = _dict(reading.get("precpu_stats"))
    usage = _dict(cpu.get("cpu_usage"))
    memory = _dict(reading.get("memory_stats"))
    detail = _dict(memory.get("stats"))
    pids = _dict(reading.get("pids_stats"))
    percpu = usage.get("percpu_usage")
    return StatsReading(
        read_at=engine_time(reading.get("read")),
        preread_at=engine_time(reading.get("preread")),
        cpu_total=_int(usage.get("total_usage")),
        pre_cpu_total=_int(_dict(pre.get("cpu_usage")).get("total_usage")),
        system=_int(cpu.get("system_cpu_usage")),
        pre_system=_int(pre.get("system_cpu_usage")),
        online_cpus=_int(cpu.get("online_cpus")) or len(percpu or []) or 1,
        memory_usage=_int(memory.get("usage")),
        # cgroup v1 names it total_inactive_file, v2 inactive_file.
        memory_cache=_int(detail.get("total_inactive_file", detail.get("inactive_file", 0))),
        memory_limit=_int(memory.get("limit")),
        memory_peak=_int(memory.get("max_usage")),
        pids=_int(pids.get("current")),
        pids_limit=_int(pids.get("limit")),
    )


def build_progress(line: bytes, log: BuildLog) -> str:
    """Read one line of the engine's build stream into `log`; the built image's id if the
    line names it, else "". A line reporting the build's failure raises `log.failure`."""
    if not line.strip():
        return ""
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"the engine sent an unreadable build message: {exc}") from exc
    if not isinstance(raw, dict):
        return ""
    if isinstance(raw.get("stream"), str):
        log.feed(raw["stream"])
    if raw.get("error") or raw.get("errorDetail"):
        detail = _dict(raw.get("errorDetail"))
        raise log.failure(str(detail.get("message") or raw.get("error") or ""))
    image_id = _dict(raw.get("aux")).get("ID")
    return image_id if isinstance(image_id, str) else ""


def engine_event(event: dict[str, Any], default_uid: int) -> EngineEvent | None:
    """A start, die, destroy, pause or unpause event of the engine's stream; None else."""
    action: EventAction
    match event.get("Action") or event.get("status"):
        case "start":
            action = "start"
        case "die":
            action = "die"
        case "destroy":
            action = "destroy"
        case "pause":
            action = "pause"
        case "unpause":
            action = "unpause"
        case _:
            return None
    attributes = _str_dict(_dict(event.get("Actor")).get("Attributes"))
    code = attributes.get("exitCode")
    return EngineEvent(
        action=action,
        sandbox_id=attributes.get(LABEL_SANDBOX, ""),
        container_id=str(event.get("id") or ""),
        owner=attributes.get(LABEL_OWNER, ""),
        owner_uid=owner_uid(attributes, default_uid),
        time=(_int(event.get("timeNano")) / 1e9) or _float(event.get("time")),
        exit_code=int(code) if code is not None and code.lstrip("-").isdigit() else None,
    )


__all__ = [
    "CAPABILITIES",
    "KEEPALIVE",
    "build_progress",
    "commit_config",
    "container_config",
    "container_detail",
    "container_summary",
    "disk_usage",
    "engine_event",
    "engine_host_config",
    "engine_time",
    "image_record",
    "inspected_image",
    "labels_of",
    "sandbox_info",
    "stats_reading",
]
