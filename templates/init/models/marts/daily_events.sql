/* @hubforge
kind        = "incremental"
time_column = "event_date"
unit        = "day"
grain       = ["event_date", "event_type"]
product     = true
description = "Events and amounts per day and event type"
*/
SELECT
    e.event_date,
    e.event_type,
    t.category,
    count(*)      AS events,
    sum(e.amount) AS amount
FROM stg_events AS e
LEFT JOIN event_types AS t USING (event_type)
WHERE e.event_date >= {{ start }}
  AND e.event_date <  {{ end }}
GROUP BY ALL
