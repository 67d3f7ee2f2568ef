"""The instance and AMI tag keys of SPEC §1, all derived from the stack's OptInTagKey."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TagKeys:
    opt_in: str

    @property
    def schedule(self) -> str:
        return f"{self.opt_in}:Schedule"

    @property
    def retain(self) -> str:
        return f"{self.opt_in}:Retain"

    @property
    def no_reboot(self) -> str:
        return f"{self.opt_in}:NoReboot"

    @property
    def on_stop(self) -> str:
        return f"{self.opt_in}:OnStop"

    @property
    def hold(self) -> str:
        return f"{self.opt_in}:Hold"
