from xrdid.logs import log_to_file
from xrdid.plots import plot_scaling

log_to_file(snakemake.log[0])
plot_scaling(snakemake.input[0], snakemake.output[0])
