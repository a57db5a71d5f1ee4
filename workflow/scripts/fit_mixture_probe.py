from xrdid.logs import log_to_file
from xrdid.mixture_probe import fit_mixture_probe

log_to_file(snakemake.log[0])
fit_mixture_probe(
    snakemake.input.model,
    snakemake.input.sticks,
    snakemake.output[0],
    patterns=snakemake.params.patterns,
    threads=snakemake.threads,
)
