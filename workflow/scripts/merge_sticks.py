from xrdid.logs import log_to_file
from xrdid.simulate.chunks import merge_sticks

log_to_file(snakemake.log[0])
merge_sticks(snakemake.input, out=snakemake.output[0], fractions=tuple(snakemake.params.fractions), seed=snakemake.params.seed)
