-- Reserved: migration 0008 belongs to another branch. This placeholder only
-- keeps the numbering contiguous; drop it when that branch's 0008 is merged.
SELECT 1;
