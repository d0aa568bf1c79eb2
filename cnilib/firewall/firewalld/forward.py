"""The firewall plugin's semantics with firewalld: each address of the attachment a source
of the configured zone (``trusted`` by default: its traffic is accepted), through the
D-Bus API, as the reference plugin's firewalld backend; the bridge's isolation
(``ingressPolicy``) in our own forward backend (nftables or iptables, an isolation-only
``ForwardSpec``), where the reference writes raw iptables rules.

Beyond the reference:

- **A record per attachment** (``records``): zone sources carry no tag, so ADD records
  the zone and the sources it added; DEL needs no prevResult, GC finds the attachments
  it drops, and the backend ADD used is the one DEL cleans whatever starts or stops in
  between. The record is written before firewalld is asked and rewritten after with what the
  attachment holds, so a crash never leaves a source of ours unrecorded.
- **Sources that are not ours stay**: a source already in the zone when ADD came
  (ZONE_ALREADY_SET) is recorded only if another record claims it (an address reused by
  a new attachment before the old one's DEL); one put there by someone else (the
  administrator, the reference plugin) is left to them. A source two records claim is
  removed only with the last claim (claims are read under the backend's lock).
- **DEL of a stopped firewalld succeeds**: its runtime sources went with it, so the
  record is dropped (a bus that does not answer is code 11 and the record stays).
- **CHECK honours firewalld's answer**: every address must be a source of the zone
  (``querySource`` true; the reference only checks that the call worked), the record
  must be there, and the isolation must be in place. CHECK changes nothing.
- **GC** removes the sources and records of this network's attachments not listed.
"""

from __future__ import annotations

from cnilib.errors import IO_FAILURE, NOT_AVAILABLE, NOT_FOUND, TRY_AGAIN_LATER, CNIError
from cnilib.firewall.base import Forward, Lock
from cnilib.firewall.firewalld import records
from cnilib.firewall.firewalld.records import LOCK_NAME, Record, source_of
from cnilib.owner import Owner, gc_doomed, kept_tags, network_part

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from cnilib.firewall.firewalld.client import Firewalld
    from cnilib.firewall.forward import ForwardSpec


# Errors after which a source may or may not have been added (the bus failed, not firewalld).
_UNSURE = (TRY_AGAIN_LATER, NOT_AVAILABLE, IO_FAILURE)


def _claims(recs: list[Record], skip: set[str]) -> set[tuple[str, str]]:
    """(zone, source) pairs the records whose tag is not in ``skip`` hold."""
    return {(r.zone, s) for r in recs if r.tag not in skip for s in r.sources}


def _warn(msg: str) -> None:
    import sys

    sys.stderr.write(f"firewall: firewalld: {msg}\n")


class FirewalldForward(Forward):
    """Zone sources through firewalld; isolation through ``isolation()`` (a Forward of
    the nftables or iptables backend, chosen when first needed)."""

    __slots__ = ("zone", "_connect", "_isolation")

    def __init__(self, zone: str, connect: "Callable[[bool], Firewalld | None]",
                 isolation: "Callable[[], Forward]") -> None:
        self.zone = zone
        self._connect = connect  # connect(required): firewalld, or None (not required, not running)
        self._isolation = isolation

    # ---- ADD ----

    def add(self, owner: Owner, spec: "ForwardSpec") -> None:
        fw = self._connect(True)
        assert fw is not None
        wanted = [source_of(ip) for ip in spec.addresses]
        isolation = (spec.bridge, spec.policy) if spec.bridge else None
        with Lock(LOCK_NAME):
            recs = records.read_all()
            old = next((r for r in recs if r.tag == owner.tag), None)
            others = _claims(recs, {owner.tag})
            mine = {(old.zone, s) for s in old.sources} if old is not None else set()
            if old is not None:  # a re-ADD: what the owner no longer wants goes first
                self._release(fw, old, others, keep={(self.zone, s) for s in wanted})
            # Recorded before firewalld is asked: a crash from here on leaves no source of
            # ours unrecorded (one recorded but never added is harmless: DEL tolerates it).
            records.write(Record(owner.tag, self.zone, wanted, isolation))
            held: list[str] = []
            try:
                for src in wanted:
                    try:
                        added = fw.add_source(self.zone, src)
                    except CNIError as e:
                        if e.code in _UNSURE:  # firewalld may have added it before the failure
                            held.append(src)
                        raise
                    if added or (self.zone, src) in others or (self.zone, src) in mine:
                        held.append(src)  # added now, or already ours / another attachment's
            finally:
                # What the owner holds now; a source someone else had put there is not ours.
                records.write(Record(owner.tag, self.zone, held, isolation))
        if isolation:
            self._isolation().add(owner, spec.isolation_only())
        elif old is not None and old.isolation:
            self._isolation().delete(owner)

    def _release(self, fw: "Firewalld", rec: Record, others: set[tuple[str, str]],
                 keep: set[tuple[str, str]] = frozenset()) -> None:
        """Remove the record's sources no other record claims and ``keep`` does not name."""
        for src in rec.sources:
            if rec.zone and (rec.zone, src) not in others and (rec.zone, src) not in keep:
                fw.remove_source(rec.zone, src)

    # ---- DEL ----

    def delete(self, owner: Owner, spec: "ForwardSpec | None" = None) -> None:
        """Remove the sources the owner's record names (that no other record claims), then
        the record; its isolation too when the record names one. Without a record and
        given ``spec`` (prevResult), the reference plugin's sources for those addresses
        (not claimed by any record of ours), best effort. Firewalld not running: its
        runtime sources are gone, the record is dropped."""
        rec = records.read(owner.tag)  # no lock, no bus: the common case is "no record"
        if rec is None:
            if spec is not None and spec.addresses:
                self._release_reference(spec)
            return
        with Lock(LOCK_NAME):
            recs = records.read_all()
            rec = next((r for r in recs if r.tag == owner.tag), None)
            if rec is None:
                return
            if rec.sources:
                self._remove_all([rec], _claims(recs, {owner.tag}))
            records.remove(owner.tag)
        if rec.isolation:
            self._isolation().delete(owner)

    def _remove_all(self, doomed: list[Record], others: set[tuple[str, str]]) -> None:
        fw = self._connect(False)
        if fw is None:
            return  # firewalld is not running: its runtime sources are gone
        try:
            for rec in doomed:
                self._release(fw, rec, others)
        except CNIError as e:
            if e.code != NOT_AVAILABLE:
                raise
            # firewalld stopped meanwhile: what is left of ours went with it

    def _release_reference(self, spec: "ForwardSpec") -> None:
        try:
            fw = self._connect(False)
            if fw is None:
                return
            with Lock(LOCK_NAME):
                claimed = _claims(records.read_all(), set())
                for ip in spec.addresses:
                    src = source_of(ip)
                    if (self.zone, src) not in claimed:
                        fw.remove_source(self.zone, src)
        except CNIError as e:  # the reference's state, not ours: never fail a DEL for it
            _warn(f"removing the reference plugin's sources for {[str(a) for a in spec.addresses]}: {e.msg}")

    # ---- CHECK ----

    def check(self, owner: Owner, spec: "ForwardSpec") -> None:
        problems = []
        rec = records.read(owner.tag)
        if rec is None:
            problems.append(f"no record of ADD in {records.RECORD_DIR} (DEL could not find the sources)")
        elif rec.zone != self.zone:
            problems.append(f"ADD recorded zone {rec.zone!r}, the config says {self.zone!r}")
        fw = self._connect(False)
        if fw is None:
            problems.insert(0, "firewalld is not running (its runtime sources are gone)")
            raise CNIError(NOT_FOUND, f"firewalld sources of {owner.tag}: {'; '.join(problems)}")
        for ip in spec.addresses:
            src = source_of(ip)
            if not fw.query_source(self.zone, src):
                problems.append(f"source {src} is not in zone {self.zone!r}")
        if spec.bridge:
            try:
                self._isolation().check(owner, spec.isolation_only())
            except CNIError as e:
                problems.append(e.msg)
        if problems:
            raise CNIError(NOT_FOUND, f"firewalld sources of {owner.tag}: {'; '.join(problems)}")

    # ---- GC ----

    def gc(self, network: str, keep: set[tuple[str, str]]) -> None:
        """Remove the sources and records of ``network``'s attachments not in ``keep``
        (their isolation goes with the forward backends' own GC, by tag)."""
        net, kept = network_part(network), kept_tags(network, keep)
        if not any(gc_doomed(r.tag, net, kept) for r in records.read_all()):
            return
        with Lock(LOCK_NAME):
            records.remove_temps()
            recs = records.read_all()
            doomed = [r for r in recs if gc_doomed(r.tag, net, kept)]
            self._remove_all(doomed, _claims(recs, {r.tag for r in doomed}))
            for r in doomed:
                records.remove(r.tag)
