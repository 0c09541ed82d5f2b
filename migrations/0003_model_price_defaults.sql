-- List prices (USD per million tokens) of common models; admins edit them with PUT /api/model-prices/{model}.
-- The sim-* models belong to the built-in simulated upstream.
INSERT INTO model_prices (model_name, input_usd_per_million, output_usd_per_million) VALUES
  ('gpt-4o', 2.5, 10),
  ('gpt-4o-mini', 0.15, 0.6),
  ('gpt-4.1', 2, 8),
  ('gpt-4.1-mini', 0.4, 1.6),
  ('gpt-4.1-nano', 0.1, 0.4),
  ('o3-mini', 1.1, 4.4),
  ('claude-sonnet-4-5', 3, 15),
  ('claude-haiku-4-5', 1, 5),
  ('claude-3-5-sonnet', 3, 15),
  ('sim-small', 0.5, 1.5),
  ('sim-large', 5, 15)
ON CONFLICT (model_name) DO NOTHING;
