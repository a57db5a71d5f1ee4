from xrdid.logs import log_to_file
from xrdid.plots import plot_confusion

log_to_file(snakemake.log[0])
title = {"space_group": "Space group", "crystal_system": "Crystal system"}[snakemake.wildcards.head]
plot_confusion(snakemake.input[0], snakemake.output[0], title=f"{title} (test split)")
