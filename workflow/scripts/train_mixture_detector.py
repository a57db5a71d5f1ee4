from xrdid.logs import log_to_file
from xrdid.mixture_detector import train_from_config

log_to_file(snakemake.log[0])
train_from_config(
    snakemake.input.model,
    snakemake.input.sticks,
    snakemake.output[0],
    train=snakemake.params.train,
    probe=snakemake.params.probe,
    threads=snakemake.threads,
)
