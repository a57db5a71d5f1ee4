from xrdid.logs import log_to_file
from xrdid.structures.sources import build_structures

log_to_file(snakemake.log[0])
build_structures(
    snakemake.wildcards.source,
    snakemake.params.settings,
    out=snakemake.output.table,
    failed_out=snakemake.output.failed,
    symprec=snakemake.params.symprec,
    state_dir=snakemake.params.state_dir,
    workers=snakemake.threads,
)
