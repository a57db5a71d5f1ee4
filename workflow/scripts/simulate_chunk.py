from xrdid.logs import log_to_file
from xrdid.simulate.chunks import simulate_chunk

log_to_file(snakemake.log[0])
simulate_chunk(
    list(snakemake.input.structures),
    chunk=int(snakemake.wildcards.chunk),
    n_chunks=snakemake.params.n_chunks,
    out=snakemake.output[0],
    d_min_A=snakemake.params.d_min_A,
    max_sticks=snakemake.params.max_sticks,
    group_by=snakemake.params.group_by,
)
