"""Per-operation energy models (joules per op), pluggable: pick a preset or build an ``EnergyModel``.

SNN energy = SOPs x e_synop + graded-input MACs x e_input_mac + neuron updates x e_neuron_update.
ANN energy = MACs x e_mac (the source ANN on a conventional 45 nm datapath in every preset).

Sources of the constants:
- Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V:
  32-bit float multiply 3.7 pJ + 32-bit float add 0.9 pJ -> E_MAC = 4.6 pJ, E_AC = 0.9 pJ (the figures
  SpikingJelly and most conversion papers use).
- Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro 38(1), 2018,
  Table 2 (simulated, 14 nm): energy per synaptic spike op (min) 23.6 pJ; energy per neuron update
  (active / inactive) 81 pJ / 52 pJ; synaptic update with learning 120 pJ (unused: no learning here).
  NOT confirmed against the primary PDF in this work: the figures are as quoted (table row text included) by
  secondary sources found with the project's search tool (repository notes citing "davies2018loihi Table 2,
  p. 96", a Nengo forum thread on Table 2); one secondary note disputes 23.6 pJ. Check Table 2 before quoting.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from snnc.ir.errors import DataError

PJ = 1e-12

# Horowitz, ISSCC 2014, 45 nm: 32-bit float MAC = mult 3.7 pJ + add 0.9 pJ
E_MAC_45NM = 4.6 * PJ
# Horowitz, ISSCC 2014, 45 nm: 32-bit float add (an accumulate: what a binary spike costs at a synapse)
E_AC_45NM = 0.9 * PJ
# Davies et al., IEEE Micro 2018, Table 2: "Energy per synaptic spike op (min)" (secondary sources, see above)
E_SYNOP_LOIHI = 23.6 * PJ
# Davies et al., IEEE Micro 2018, Table 2: "Energy per neuron update (active / inactive)" 81 / 52 pJ
E_NEURON_ACTIVE_LOIHI = 81.0 * PJ
E_NEURON_INACTIVE_LOIHI = 52.0 * PJ


@dataclass(frozen=True)
class EnergyModel:
    """Joules per operation. ``e_input_mac``: a graded input event times a weight (a MAC)."""

    name: str
    e_synop: float  # per synaptic op (binary spike x one synapse: an accumulate)
    e_neuron_update: float  # per neuron per time-step
    e_input_mac: float  # per graded-input event x one synapse
    e_mac: float  # per ANN multiply-accumulate
    source: str

    def snn_energy(self, sops: float, input_macs: float, neuron_updates: float) -> float:
        return sops * self.e_synop + input_macs * self.e_input_mac + neuron_updates * self.e_neuron_update

    def ann_energy(self, macs: float) -> float:
        return macs * self.e_mac

    def as_dict(self) -> dict:
        return asdict(self)


MODELS: dict[str, EnergyModel] = {
    # 45 nm CMOS: a synaptic op is one accumulate; a neuron update is one accumulate (v += input) by convention
    # (Horowitz has no "neuron update"; the compare and reset are not charged).
    "cmos45": EnergyModel("cmos45", e_synop=E_AC_45NM, e_neuron_update=E_AC_45NM, e_input_mac=E_MAC_45NM,
                          e_mac=E_MAC_45NM, source="Horowitz ISSCC 2014 (45 nm): MAC 4.6 pJ, AC 0.9 pJ"),
    # Loihi: synaptic op and (active) neuron update from Davies 2018; Loihi 1 has no graded spikes, so the
    # input layer's MACs are charged at the 45 nm MAC (computed off-chip); the ANN at the 45 nm MAC.
    "loihi": EnergyModel("loihi", e_synop=E_SYNOP_LOIHI, e_neuron_update=E_NEURON_ACTIVE_LOIHI,
                         e_input_mac=E_MAC_45NM, e_mac=E_MAC_45NM,
                         source="Davies IEEE Micro 2018 Table 2: synop 23.6 pJ, neuron update 81 pJ (active); "
                                "input and ANN MACs 4.6 pJ (Horowitz 2014)"),
}


def get_model(name: str) -> EnergyModel:
    """Preset by name; an unknown name raises ``DataError`` listing the presets."""
    try:
        return MODELS[name]
    except KeyError:
        raise DataError(f"energy model {name!r} is not known; choose one of {sorted(MODELS)}") from None
