from xrdid.logs import log_to_file
from xrdid.plots.augmentations import plot_augmentations_from_table

log_to_file(snakemake.log[0])
plot_augmentations_from_table(snakemake.input[0], snakemake.params.instrument, snakemake.params.augment, snakemake.output[0])
