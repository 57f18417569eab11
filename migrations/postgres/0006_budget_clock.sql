-- When each bucket was last reserved from, by the reserving process's wall
-- clock: a reservation that finds it in the future knows the clock stepped
-- back, and shifts the bucket back by as much instead of stalling on it.
ALTER TABLE rate_budget ADD COLUMN reserved_at_us BIGINT NOT NULL DEFAULT 0;
