"""Score building blocks shared by the methods and the detector shell: the inferers that turn a model into a
raw map (slice, volume, sample), their combination, and the post-processing rules after the raw map
(calibration, border rule, sample rule). Pure transforms of arrays and tensors: no files, no registry.

    slice_inferer   AxisModel, axis_map        (2-D slice models: DPA, 2-D segmenter)
    volume_inferer  VolumeModel, volume_map    (whole-volume models: histogram, 3-D segmenter)
    sample_inferer  SampleModel, score_sample  (sample-level models: volume histogram)
    combine         score_raw, COMBINE_RULES
    calibration     Calibration, fit_calibration (raw -> [0, 1], fitted on normal volumes)
    border          BorderRule, apply_border
    sample_rules    SampleRule, CANDIDATE_RULES
    device          device_for_rank, autocast
"""
