from xrdid.logs import log_to_file
from xrdid.plots import plot_real_recall

log_to_file(snakemake.log[0])
plot_real_recall(snakemake.input[0], snakemake.output[0])
