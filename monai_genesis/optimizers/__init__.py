"""Learning-rate schedules and parameter groups of the fine-tuning recipes."""

from .lr_scheduler import SawtoothWarmupPolySchedule, WarmupPolySchedule, encoder_param_groups, warmup_poly_factor

__all__ = ["SawtoothWarmupPolySchedule", "WarmupPolySchedule", "encoder_param_groups", "warmup_poly_factor"]
