"""The training batch streams: unique indices within a batch, full coverage, exact resume."""

from lionfer.data.loaders import StreamSampler


def batches(sampler, count):
    stream = iter(sampler)
    return [next(stream) for _ in range(count)]


def test_no_index_twice_in_a_batch_across_epoch_boundaries():
    sampler = StreamSampler(n=10, batch_size=4, seed=0, stream=0)
    for batch in batches(sampler, 50):
        indices = [i for i, _ in batch]
        assert len(set(indices)) == 4


def test_each_epoch_draws_distinct_indices_and_drops_the_remainder():
    sampler = StreamSampler(n=10, batch_size=4, seed=3, stream=1)
    first_epoch = [i for batch in batches(sampler, 2) for i, _ in batch]
    assert len(set(first_epoch)) == 8  # 2 batches of 4 from one permutation, 2 left out
    seen = {i for batch in batches(sampler, 40) for i, _ in batch}
    assert seen == set(range(10))  # other indices are left out in other epochs


def test_stream_is_a_pure_function_of_the_batch_position():
    full = batches(StreamSampler(n=7, batch_size=3, seed=1, stream=0), 12)
    resumed = batches(StreamSampler(n=7, batch_size=3, seed=1, stream=0, start_batch=5), 7)
    assert resumed == full[5:]
    other_seed = batches(StreamSampler(n=7, batch_size=3, seed=2, stream=0), 12)
    assert other_seed != full


def test_a_set_smaller_than_a_batch_is_cycled():
    sampler = StreamSampler(n=3, batch_size=5, seed=0, stream=0)
    first, second = batches(sampler, 2)
    assert sorted(i for i, _ in first[:3]) == [0, 1, 2]
    assert len(first) == len(second) == 5
