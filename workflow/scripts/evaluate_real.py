from xrdid.evaluate.real_split import evaluate_real_split
from xrdid.logs import log_to_file

log_to_file(snakemake.log[0])
evaluate_real_split(
    snakemake.input.model,
    snakemake.input.sticks,
    out=snakemake.output.metrics,
    predictions=snakemake.output.predictions,
    split=snakemake.wildcards.split,
    instruments=snakemake.params.instruments,
    draws=snakemake.params.draws,
    seed=snakemake.params.seed,
    threads=snakemake.threads,
)
