from xrdid.logs import log_to_file
from xrdid.plots import plot_synthetic_vs_measured

log_to_file(snakemake.log[0])
plot_synthetic_vs_measured(snakemake.input.synthetic, snakemake.input.measured, snakemake.output[0], label=snakemake.wildcards.set)
