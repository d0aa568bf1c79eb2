"""A CRI client speaking to a runtime's socket as kubelet does (gRPC, ``runtime.v1``).

Only the calls the CRI lane needs: Version, Status, RunPodSandbox, PodSandboxStatus,
StopPodSandbox, RemovePodSandbox, ListPodSandbox. Messages come from ``cri_schema`` (the
runtime's own descriptor); requests are given as dicts in the CRI's JSON form (camelCase
field names, as in the API's documentation). Every call's wall time is recorded.
"""

from __future__ import annotations

import threading
import time

import grpc
from google.protobuf import json_format

from conformance.runtimes import cri_schema

SERVICE = "runtime.v1.RuntimeService"


class CriError(Exception):
    """A CRI call failed: the gRPC status code and the runtime's message (for RunPodSandbox,
    the CNI plugin's error is in it)."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method}: {code.name}: {details}")
        self.method, self.code, self.details = method, code, details


class CriClient:
    """A gRPC channel to the CRI socket ``sock``; ``timings`` holds each call's seconds."""

    def __init__(self, sock: str, *, schema: cri_schema.Schema | None = None, timeout: float = 120) -> None:
        self.schema = schema or cri_schema.load()
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix:{sock}")
        self.timings: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self._stubs: dict[str, object] = {}

    def call(self, method: str, request: dict | None = None) -> dict:
        """``RuntimeService/<method>`` with ``request`` (CRI JSON form); the answer as a dict
        (CRI JSON form, default values included)."""
        req_cls, resp_cls = self.schema.methods[f"RuntimeService/{method}"]
        stub = self._stubs.get(method)
        if stub is None:
            stub = self.channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=req_cls.SerializeToString,
                                            response_deserializer=resp_cls.FromString)
            self._stubs[method] = stub
        req = json_format.ParseDict(request or {}, req_cls())
        start = time.perf_counter()
        try:
            resp = stub(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise CriError(method, e.code(), e.details() or "") from None
        finally:
            with self._lock:
                self.timings.setdefault(method, []).append(time.perf_counter() - start)
        return json_format.MessageToDict(resp, always_print_fields_with_no_presence=True)

    # The calls, named as kubelet's CRI client names them.
    def version(self) -> dict:
        """Version: runtime name and version, CRI API version."""
        return self.call("Version", {"version": "v1"})

    def status(self) -> dict:
        """Status: the runtime's conditions (RuntimeReady, NetworkReady)."""
        return self.call("Status", {})

    def conditions(self) -> dict[str, dict]:
        """Status's conditions by type."""
        return {c["type"]: c for c in self.status()["status"]["conditions"]}

    def run_pod_sandbox(self, config: dict) -> str:
        """RunPodSandbox with ``config`` (a PodSandboxConfig); the sandbox ID."""
        return self.call("RunPodSandbox", {"config": config})["podSandboxId"]

    def pod_sandbox_status(self, sandbox_id: str, *, verbose: bool = False) -> dict:
        """PodSandboxStatus: ``status`` (state, network.ip...) and, verbose, ``info``."""
        return self.call("PodSandboxStatus", {"podSandboxId": sandbox_id, "verbose": verbose})

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """StopPodSandbox: the sandbox's processes end and its network is torn down."""
        self.call("StopPodSandbox", {"podSandboxId": sandbox_id})

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """RemovePodSandbox: the sandbox's remains are removed."""
        self.call("RemovePodSandbox", {"podSandboxId": sandbox_id})

    def list_pod_sandbox(self) -> list[dict]:
        """ListPodSandbox: every sandbox the runtime knows."""
        return self.call("ListPodSandbox", {}).get("items", [])

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()
