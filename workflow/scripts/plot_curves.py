from xrdid.logs import log_to_file
from xrdid.plots import plot_curves

log_to_file(snakemake.log[0])
plot_curves(snakemake.input[0], snakemake.output[0])
