from xrdid.logs import log_to_file
from xrdid.structures.sources import derive_from_config

log_to_file(snakemake.log[0])
derive_from_config(
    list(snakemake.input),
    snakemake.params.settings,
    out=snakemake.output.table,
    failed_out=snakemake.output.failed,
    symprec=snakemake.params.symprec,
    workers=snakemake.threads,
)
