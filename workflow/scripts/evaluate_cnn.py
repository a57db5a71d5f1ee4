from xrdid.evaluate import evaluate_checkpoint
from xrdid.instrument import Augment
from xrdid.logs import log_to_file

log_to_file(snakemake.log[0])
evaluate_checkpoint(
    checkpoint=snakemake.input.model,
    sticks=snakemake.input.sticks,
    metrics_out=snakemake.output.metrics,
    confusion_space_group=snakemake.output.confusion_space_group,
    confusion_crystal_system=snakemake.output.confusion_crystal_system,
    augment=Augment.from_dict(snakemake.params.augment),
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
