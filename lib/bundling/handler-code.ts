import * as path from 'node:path';
import * as cdk from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { bundleHandler } from './bundle-handler.ts';

/**
 * A Lambda handler's code, bundled locally by esbuild at synth (no Docker; see ./bundle-handler.ts
 * for why not NodejsFunction): `entry` is the handler file, its folder the asset's source.
 */
export function handlerCode(entry: string): lambda.Code {
  return lambda.Code.fromAsset(path.dirname(entry), {
    assetHashType: cdk.AssetHashType.OUTPUT,
    bundling: {
      // Required by the type, never pulled: local bundling either succeeds or throws.
      image: cdk.DockerImage.fromRegistry('public.ecr.aws/docker/library/node:24'),
      local: {
        tryBundle: (outputDir) => {
          bundleHandler(entry, outputDir);
          return true;
        },
      },
    },
  });
}
