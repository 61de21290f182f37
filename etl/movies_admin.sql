-- The movie admin's database as the ETL reads it: the usual content.film_work table, with demo
-- movies. `cinema etl seed-source` (run by `make run`) creates the database named in
-- ETL_SOURCE_URL (default movies_admin) and runs this file; the tests run it on their own
-- scratch database. Safe to run again: nothing is created twice, no demo row is overwritten.

CREATE SCHEMA IF NOT EXISTS content;

CREATE TABLE IF NOT EXISTS content.film_work (
    id            uuid PRIMARY KEY,
    title         text NOT NULL,
    description   text,
    creation_date date,
    rating        double precision,
    type          text NOT NULL DEFAULT 'movie',
    created       timestamptz NOT NULL DEFAULT now(),
    modified      timestamptz NOT NULL DEFAULT now()
);

-- The ETL reads by keyset on (modified, id): this index makes every batch an index range scan.
CREATE INDEX IF NOT EXISTS film_work_modified_id_idx ON content.film_work (modified, id);

-- An update that does not set `modified` itself still moves it, so no change goes unseen.
CREATE OR REPLACE FUNCTION content.film_work_touch_modified() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.modified IS NOT DISTINCT FROM OLD.modified THEN
        NEW.modified := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER film_work_touch_modified
    BEFORE UPDATE ON content.film_work
    FOR EACH ROW EXECUTE FUNCTION content.film_work_touch_modified();

-- The first six are billing's demo catalog (`cinema billing seed-demo`), with the same ids, so the
-- ETL's full pass keeps them available; the others exist only here and reach billing through the
-- ETL (without prices until an admin sets them).
INSERT INTO content.film_work (id, title, description, creation_date, rating, type, created, modified)
VALUES
    ('a41597e3-2f6e-532d-9720-8d29603f5c7f', 'The Long Night Train', 'The Long Night Train — a demo film.', '2019-03-14', 7.9, 'movie', '2024-01-10 09:00:00+00', '2024-01-10 09:00:00+00'),
    ('69e72d00-f547-5b77-b4d7-9d6c849f8479', 'Northern Lights', 'Northern Lights — a demo film.', '2020-11-02', 8.1, 'movie', '2024-01-10 09:00:00+00', '2024-01-10 09:00:00+00'),
    ('e75a1ceb-7bb7-5518-9db5-1222f5d41c7d', 'A Quiet Harbour', 'A Quiet Harbour — a demo film.', '2017-06-21', 7.2, 'movie', '2024-01-10 09:00:00+00', '2024-01-10 09:00:00+00'),
    ('d037988d-766e-5b32-b2d1-c7d8ef3572c7', 'Paper Moons', 'Paper Moons — a demo film.', '2021-09-30', 6.8, 'movie', '2024-01-10 09:00:00+00', '2024-01-10 09:00:00+00'),
    ('8fd28e0b-7e1f-54f1-80b7-7beae5ac9981', 'The Last Projectionist', 'The Last Projectionist — a demo film.', '2022-02-11', 8.4, 'movie', '2024-01-10 09:00:00+00', '2024-01-10 09:00:00+00'),
    ('26cbe7be-0d7b-5465-b066-d13eed964297', 'Salt and Cedar', 'Salt and Cedar — a demo film.', '2018-05-05', 7.0, 'movie', '2024-01-10 09:00:00+00', '2024-01-10 09:00:00+00'),
    ('ffc2a20b-c02b-513f-a124-3e81f142afb5', 'Winter Orchard', 'Three sisters keep a frozen orchard alive through one hard winter.', '2023-01-19', 7.5, 'movie', '2024-02-01 12:00:00+00', '2024-02-01 12:00:00+00'),
    ('728d0718-74f7-5009-91f5-364edddfa7f2', 'The Glass Lighthouse', 'A keeper finds letters hidden in the lamp room.', '2016-08-08', 6.9, 'movie', '2024-02-01 12:00:00+00', '2024-02-01 12:00:00+00'),
    ('194c8927-de90-51cf-bba6-5773bae8ec5b', 'Seven Bridges Home', 'A road trip across a river city, one bridge per episode.', '2022-10-03', 8.0, 'tv_show', '2024-02-01 12:00:00+00', '2024-02-01 12:00:00+00'),
    ('cc19baeb-85c0-5b2f-9f34-38b3286825df', 'Ashes of August', NULL, '2015-08-29', 6.4, 'movie', '2024-02-01 12:00:00+00', '2024-02-01 12:00:00+00')
ON CONFLICT (id) DO NOTHING;
