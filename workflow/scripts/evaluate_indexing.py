from xrdid.indexing.evaluate import evaluate_indexing
from xrdid.logs import log_to_file

log_to_file(snakemake.log[0])
evaluate_indexing(
    sticks=snakemake.input.sticks,
    structures=list(snakemake.input.structures),
    out=snakemake.output[0],
    instrument=snakemake.params.instrument,
    augment=snakemake.params.augment,
    seed=snakemake.params.seed,
    max_patterns=snakemake.params.max_patterns,
    time_budget_s=snakemake.params.time_budget_s,
)
