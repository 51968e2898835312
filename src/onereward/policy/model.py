"""The trainable generator: one base FLUX transformer plus the weights the algorithms need.

**LoRA** (``finetune="lora"``): peft adapters on the one base transformer (no second copy of the
base in memory):

- ``policy``: the trained adapter (pi_theta);
- ``ema``: the EMA of ``policy`` (Algorithm 1's output pi_ema; Algorithm 2's reference);
- ``old``: DiffusionNFT's sampling policy v_old (an EMA of ``policy`` with ``nft_old_decay``);
- ``base``: the adapters disabled (Algorithm 1's frozen reference, NFT's KL anchor).

**Full** (``finetune="full"``): the transformer itself is trained; ``ema`` / ``old`` / ``base`` are
separate frozen copies, made only when an algorithm needs them.

Trainable weights are always float32 (the optimiser's master copy, never bf16); frozen base weights
keep the configured dtype and mixed precision is autocast. :meth:`PolicyModel.use` switches which
weights a call runs with; peft's adapter switching also toggles ``requires_grad``, which
:meth:`PolicyModel.use` restores afterwards (only ``policy`` is trainable).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator
from typing import Any

import torch

WHICH = ("policy", "ema", "old", "base")


class PolicyModel:
    """A transformer with the ``policy`` weights trainable and the ``ema``/``old``/``base`` variants."""

    def __init__(
        self,
        transformer: Any,
        *,
        finetune: str,
        lora_rank: int = 16,
        lora_targets: list[str] | None = None,
        with_old: bool = False,
        with_base_copy: bool = False,
        seed: int = 0,
    ) -> None:
        self.finetune = finetune
        self.transformer = transformer
        self.wrapped: Any = transformer  # the accelerate-prepared module (DDP) for the grad pass
        self.lora_config = None
        self.names = ["policy", "ema"] + (["old"] if with_old else [])
        transformer.requires_grad_(False)
        if finetune == "lora":
            from peft import LoraConfig

            targets = lora_targets or ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0"]
            present = {n for n, _ in transformer.named_modules()}
            if not any(n.endswith(t) for t in targets for n in present):
                raise ValueError(f"lora_targets: none of {targets} names a module of the transformer")
            self.lora_config = LoraConfig(
                r=lora_rank, lora_alpha=lora_rank, init_lora_weights=True, target_modules=targets
            )
            # LoRA A matrices start random: seeded, so a run (and its rerun) starts from the same weights.
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                torch.manual_seed(seed)
                warnings.filterwarnings(
                    "ignore", message="Already found a `peft_config`"
                )  # several adapters: intended
                for name in self.names:
                    transformer.add_adapter(self.lora_config, adapter_name=name)
            # Master weights in float32 whatever the base dtype (peft casts inputs to the adapter's dtype).
            for n, p in transformer.named_parameters():
                if ".lora_" in n:
                    p.data = p.data.float()
            self._pairs = {
                name: self._adapter_pairs(name) for name in self.names if name != "policy"
            }  # name -> [(target param, policy param)]
            self._activate("policy")
            for name in self.names[1:]:  # start equal to the policy (LoRA A matrices are random)
                self.copy_policy_to(name)
            self.copies: dict[str, Any] = {}
        else:
            self.copies = {}
            if with_base_copy:  # the frozen base keeps its dtype (bf16 on a GPU)
                self.copies["base"] = self._frozen_copy(transformer, transformer.dtype)
            transformer.float()
            transformer.requires_grad_(True)
            for name in self.names[1:]:
                self.copies[name] = self._frozen_copy(transformer, torch.float32)

    # ---- weights -------------------------------------------------------------------------------
    @staticmethod
    def _frozen_copy(module: Any, dtype: torch.dtype) -> Any:
        clone = copy.deepcopy(module).to(dtype)
        clone.requires_grad_(False)
        return clone.eval()

    def _adapter_pairs(self, name: str) -> list[tuple[torch.nn.Parameter, torch.nn.Parameter]]:
        params = dict(self.transformer.named_parameters())
        pairs = []
        for n, p in params.items():
            if f".{name}." in n and ".lora_" in n:
                pairs.append((p, params[n.replace(f".{name}.", ".policy.")]))
        if not pairs:
            raise RuntimeError(f"adapter {name!r} has no LoRA parameters")
        return pairs

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The ``policy`` weights (float32)."""
        if self.finetune == "lora":
            return [p for n, p in self.transformer.named_parameters() if ".policy." in n]
        return list(self.transformer.parameters())

    def named_state(self, which: str) -> dict[str, torch.Tensor]:
        """The weights of ``policy``/``ema``/``old`` by a stable name (checkpoints)."""
        if self.finetune == "lora":
            tag = f".{which}."
            return {n.replace(tag, "."): p for n, p in self.transformer.named_parameters() if tag in n}
        module = self.transformer if which == "policy" else self.copies[which]
        return dict(module.state_dict())

    def load_named_state(self, which: str, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (from :meth:`named_state`) into the ``which`` weights in place."""
        mine = self.named_state(which)
        missing = sorted(set(mine) ^ set(state))
        if missing:
            raise ValueError(f"checkpoint: the {which} weights differ in names, e.g. {missing[:3]}")
        with torch.no_grad():
            for name, tensor in mine.items():
                tensor.copy_(state[name].to(tensor.device, tensor.dtype))

    @torch.no_grad()
    def ema_update(self, which: str, decay: float) -> None:
        """``which <- decay * which + (1 - decay) * policy`` (in float32)."""
        if self.finetune == "lora":
            for target, source in self._pairs[which]:
                target.lerp_(source.detach().to(target.dtype), 1.0 - decay)
            return
        target = self.copies[which]
        for t, s in zip(target.parameters(), self.transformer.parameters(), strict=True):
            t.lerp_(s.detach().to(t.dtype), 1.0 - decay)

    @torch.no_grad()
    def copy_policy_to(self, which: str) -> None:
        """Set ``which`` to the policy's current weights."""
        self.ema_update(which, 0.0)

    # ---- switching -----------------------------------------------------------------------------
    def _activate(self, name: str) -> None:
        t = self.transformer
        if name == "base":
            t.disable_adapters()
        else:
            t.enable_adapters()
            t.set_adapter(name)
        for n, p in t.named_parameters():  # peft's switching toggles requires_grad: only policy trains
            p.requires_grad_(".policy." in n)

    @contextlib.contextmanager
    def use(self, which: str, *, grad: bool = False) -> Iterator[Any]:
        """The module to call for ``which`` weights (``grad``: the accelerate-wrapped trainable one)."""
        if which not in WHICH:
            raise ValueError(f"use: expected one of {WHICH}, got {which!r}")
        if self.finetune == "full":
            if which == "policy":
                yield self.wrapped if grad else self.transformer
            elif which in self.copies:
                yield self.copies[which]
            else:
                raise RuntimeError(f"use: no {which!r} copy was made for this run")
            return
        if which != "policy" and which != "base" and which not in self.names:
            raise RuntimeError(f"use: no {which!r} adapter was made for this run")
        if which == "policy":
            yield self.wrapped if grad else self.transformer
            return
        self._activate(which)
        try:
            yield self.transformer
        finally:
            self._activate("policy")
