from xrdid.logs import log_to_file
from xrdid.report import metrics_table

log_to_file(snakemake.log[0])
metrics_table({"CNN": snakemake.input.cnn}, snakemake.output[0], indexing=snakemake.input.indexing)
