from xrdid.evaluate.measured import evaluate_measured
from xrdid.logs import log_to_file

log_to_file(snakemake.log[0])
evaluate_measured(
    checkpoint=snakemake.input.model,
    folder=snakemake.input.folder,
    labels=snakemake.input.labels,
    predictions_out=snakemake.output.predictions,
    metrics_out=snakemake.output.metrics,
)
